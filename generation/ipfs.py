"""Content addressing for token metadata and images.

The contract stores the sha256 digest of each token's metadata bytes and ``tokenURI`` returns
``ipfs://<CIDv1, raw codec, sha2-256>``. For content of at most one Kubo chunk that CID is
exactly what ``ipfs add --cid-version=1 --raw-leaves`` produces, so the on-chain digest, the
CID and the pinned bytes all name the same thing. Larger content would be split by Kubo into a
multi-block UnixFS DAG whose root CID is not a hash of the bytes, so we refuse it here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from multiformats import CID, multihash

__all__ = [
    "CHUNK_SIZE",
    "ContentCorrupted",
    "ContentNotFound",
    "ContentTooLarge",
    "InvalidCID",
    "IpfsError",
    "LocalStore",
    "cid_from_sha256",
    "compute_cid",
    "sha256_from_cid",
]

#: Kubo's default chunker (``size-262144``): content up to this many bytes is a single block.
CHUNK_SIZE = 262144

_RAW_CODEC = "raw"  # multicodec 0x55
_HASH = "sha2-256"  # multicodec 0x12
_BASE = "base32"  # multibase 'b', lowercase RFC 4648 without padding
_SHA256_LEN = 32


class IpfsError(Exception):
    """Base class for content-addressing errors, so callers can catch them all at once."""


class ContentTooLarge(IpfsError, ValueError):
    """Content exceeds one Kubo chunk, so its Kubo CID would not be a plain sha256 of it."""


class InvalidCID(IpfsError, ValueError):
    """A CID string is malformed or not the CIDv1/raw/sha2-256 form this project uses."""


class ContentNotFound(IpfsError, KeyError):
    """The store holds no content for the requested CID."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else "content not found"


class ContentCorrupted(IpfsError):
    """Stored bytes no longer hash to their CID (disk corruption or tampering)."""


def _cid_for_digest(digest: bytes) -> str:
    return str(CID(_BASE, 1, _RAW_CODEC, multihash.wrap(digest, _HASH)))


def compute_cid(data: bytes) -> str:
    """Return the CIDv1 (raw, sha2-256, base32) that Kubo gives ``data`` with raw leaves.

    Only single-chunk content is accepted, because only then does Kubo's CID equal the
    sha256 of the bytes that the contract stores.
    """
    size = len(data)
    if size > CHUNK_SIZE:
        raise ContentTooLarge(
            f"content is {size} bytes, over the single-chunk limit of {CHUNK_SIZE} bytes; "
            "Kubo would store it as a multi-block UnixFS DAG (dag-pb root), "
            "which is future work"
        )
    return _cid_for_digest(hashlib.sha256(data).digest())


def cid_from_sha256(digest: bytes) -> str:
    """Turn an on-chain sha256 digest into the ``ipfs://`` CID string for the same bytes."""
    if len(digest) != _SHA256_LEN:
        raise InvalidCID(f"sha256 digest must be {_SHA256_LEN} bytes, got {len(digest)}")
    return _cid_for_digest(bytes(digest))


def _decode(cid: str) -> CID:
    """Parse and validate ``cid`` as a CIDv1, raw codec, sha2-256 CID."""
    if not isinstance(cid, str) or not cid:
        raise InvalidCID(f"CID must be a non-empty string, got {cid!r}")
    try:
        parsed = CID.decode(cid)
    except Exception as exc:  # multiformats raises several error types for bad input
        raise InvalidCID(f"malformed CID {cid!r}: {exc}") from exc
    if parsed.version != 1:
        raise InvalidCID(f"CID {cid!r} is version {parsed.version}, expected 1")
    if parsed.codec.name != _RAW_CODEC:
        raise InvalidCID(f"CID {cid!r} has codec {parsed.codec.name}, expected {_RAW_CODEC}")
    if parsed.hashfun.name != _HASH:
        raise InvalidCID(f"CID {cid!r} uses hash {parsed.hashfun.name}, expected {_HASH}")
    if len(parsed.raw_digest) != _SHA256_LEN:
        raise InvalidCID(f"CID {cid!r} has a {len(parsed.raw_digest)}-byte digest")
    return parsed


def sha256_from_cid(cid: str) -> bytes:
    """Extract the sha256 digest (what the contract stores) from a CIDv1 raw sha2-256 CID."""
    return bytes(_decode(cid).raw_digest)


def _canonical(cid: str) -> str:
    """Validate ``cid`` and return its canonical base32 form, used for file names."""
    return str(_decode(cid).set(base=_BASE))


class LocalStore:
    """A content-addressed blob store on local disk.

    Used to stage renders and metadata before pinning and as a local cache; every read is
    re-verified against its CID so a corrupted or tampered file is never served.
    Layout: ``root/<last 2 chars of cid>/<cid>``. The last characters fan out evenly
    (the leading ``bafkrei`` prefix is the same for every CID).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, cid: str) -> Path:
        """Return where the content for ``cid`` lives (validating ``cid`` first)."""
        canonical = _canonical(cid)
        return self.root / canonical[-2:] / canonical

    def add(self, data: bytes) -> str:
        """Store ``data`` and return its CID; writes atomically and is idempotent."""
        cid = compute_cid(data)
        path = self.path_for(cid)
        if path.is_file() and self._matches(path, cid):
            return cid
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return cid

    def get(self, cid: str) -> bytes:
        """Return the bytes for ``cid``, verifying they still hash to it."""
        path = self.path_for(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ContentNotFound(f"no content for CID {cid} in {self.root}") from None
        if hashlib.sha256(data).digest() != sha256_from_cid(cid):
            raise ContentCorrupted(f"content at {path} does not hash to CID {cid}")
        return data

    def has(self, cid: str) -> bool:
        """Return whether content for ``cid`` is stored (without re-hashing it)."""
        return self.path_for(cid).is_file()

    @staticmethod
    def _matches(path: Path, cid: str) -> bool:
        return hashlib.sha256(path.read_bytes()).digest() == sha256_from_cid(cid)
