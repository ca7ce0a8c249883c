"""A content-addressed file store on local disk: the ``local`` backend and the gateway's source."""

from __future__ import annotations

from pathlib import Path

from foundation.files import write_atomically
from ipfs.cid import canonical_cid, compute_cid
from ipfs.errors import ContentCorrupted, ContentNotFound

__all__ = ["LocalStore"]


class LocalStore:
    """A content-addressed file store on local disk.

    The embedded IPFS backend (served by the gateway view), and the staging area for renders
    and metadata. Files are stored whole under the CID Kubo would give them (raw or dag-pb
    root) and every read recomputes that CID, so a corrupted or tampered file is never served.
    Layout: ``root/<last 2 chars of cid>/<cid>``. The last characters fan out evenly
    (the leading ``bafkrei``/``bafybei`` prefix is the same for every CID of a kind).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, cid: str) -> Path:
        """Return where the content for ``cid`` lives (validating ``cid`` first)."""
        canonical = canonical_cid(cid)
        return self.root / canonical[-2:] / canonical

    def add(self, data: bytes) -> str:
        """Store ``data`` and return its CID; writes atomically and is idempotent."""
        cid = compute_cid(data)
        path = self.path_for(cid)
        if path.is_file() and compute_cid(path.read_bytes()) == cid:
            return cid
        write_atomically(path, data, durable=True)
        return cid

    def get(self, cid: str) -> bytes:
        """Return the bytes for ``cid``, verifying they still give that CID."""
        path = self.path_for(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ContentNotFound(f"no content for CID {cid} in {self.root}") from None
        actual = compute_cid(data)
        if actual != canonical_cid(cid):
            raise ContentCorrupted(f"content at {path} gives CID {actual}, not {cid}")
        return data

    def has(self, cid: str) -> bool:
        """Return whether content for ``cid`` is stored (without re-hashing it)."""
        return self.path_for(cid).is_file()
