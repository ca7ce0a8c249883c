"""A content-addressed file store on local disk: the ``local`` backend and the gateway's source."""

from __future__ import annotations

import hashlib
from pathlib import Path

from foundation.files import write_atomically
from ipfs import unixfs
from ipfs.cid import canonical_cid, compute_cid, matches_cid, parse_cid
from ipfs.errors import ContentCorrupted, ContentNotFound
from ipfs.profiles import LEGACY, CidProfile

__all__ = ["LocalStore"]


class LocalStore:
    """A content-addressed file store on local disk.

    The embedded IPFS backend (served by the gateway view), and the staging area for renders
    and metadata. Files are stored whole under the CID Kubo would give them (raw or dag-pb
    root) and every read recomputes that CID, so a corrupted or tampered file is never served.
    A file is named under the CID profile it was added with (:mod:`ipfs.profiles`); a read
    checks the bytes against the CID under each profile until one rebuilds it.
    Layout: ``root/<last 2 chars of cid>/<cid>``. The last characters fan out evenly (the
    leading ``bafkrei``/``bafybei`` prefix is the same for every CID of a kind).

    Directory nodes (published model folders, :mod:`ipfs.tree`) are blocks, not files: they
    live under ``root/blocks/`` by their dag-pb CID, checked against its sha256 on every read.
    :meth:`block` answers a trustless gateway's ``?format=raw`` for any CID stored here.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, cid: str) -> Path:
        """Return where the content for ``cid`` lives (validating ``cid`` first)."""
        canonical = canonical_cid(cid)
        return self.root / canonical[-2:] / canonical

    def add(self, data: bytes, profile: CidProfile = LEGACY) -> str:
        """Store ``data`` and return its CID under ``profile``; writes atomically and is
        idempotent."""
        cid = compute_cid(data, profile)
        path = self.path_for(cid)
        if path.is_file() and compute_cid(path.read_bytes(), profile) == cid:
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
        if matches_cid(data, cid) is None:
            raise ContentCorrupted(
                f"content at {path} gives CID {compute_cid(data)} (legacy profile), not {cid} "
                "under any profile"
            )
        return data

    def has(self, cid: str) -> bool:
        """Return whether content for ``cid`` is stored (without re-hashing it)."""
        return self.path_for(cid).is_file()

    # --- blocks: directory nodes, and any stored CID's root block ----------------------------

    def _block_path(self, cid: str) -> Path:
        canonical = canonical_cid(cid)
        return self.root / "blocks" / canonical[-2:] / canonical

    def add_block(self, block: unixfs.Block) -> str:
        """Store a directory node under its CID (checked to hash to it); idempotent."""
        cid = str(block.cid)
        if hashlib.sha256(block.data).digest() != bytes(parse_cid(cid).raw_digest):
            raise ContentCorrupted(f"the block given for {cid} does not hash to its CID")
        path = self._block_path(cid)
        if not path.is_file() or path.read_bytes() != block.data:
            write_atomically(path, block.data, durable=True)
        return cid

    def block(self, cid: str) -> bytes:
        """The raw block named ``cid``: a stored directory node, or the root block of a stored
        file (a single-chunk file is its own block), each checked against the CID."""
        path = self._block_path(cid)
        if path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).digest() != bytes(parse_cid(cid).raw_digest):
                raise ContentCorrupted(f"the stored block {path} does not hash to {cid}")
            return data
        data = self.get(cid)
        return self.root_block(data, matches_cid(data, cid) or LEGACY)

    @staticmethod
    def root_block(data: bytes, profile: CidProfile = LEGACY) -> bytes:
        """The root block of ``data``'s UnixFS DAG under ``profile`` (the bytes themselves
        for one chunk)."""
        blocks: list[unixfs.Block] = []
        unixfs.file_cid(
            data, chunk_size=profile.chunk_size, max_links=profile.max_links, on_block=blocks.append
        )
        return blocks[-1].data

    def has_block(self, cid: str) -> bool:
        """Whether ``cid`` is stored, as a directory node or as a file."""
        return self._block_path(cid).is_file() or self.has(cid)
