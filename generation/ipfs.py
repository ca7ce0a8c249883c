"""Content addressing for token metadata and images.

Every CID here is what ``ipfs add --cid-version=1 --raw-leaves`` gives the same bytes with
Kubo's defaults (chunker ``size-262144``, balanced layout, 174 links per node, sha2-256; the
DAG is built in :mod:`generation.unixfs`):

- content of at most one chunk (262144 bytes) is a single raw block, so its CID (CIDv1, ``raw``
  codec, ``bafkrei…``) is a plain sha256 of the bytes. Token metadata must be of this kind: the
  contract stores the sha256 digest of the metadata bytes and ``tokenURI`` rebuilds
  ``ipfs://<CIDv1 raw sha2-256>`` from it (:func:`cid_from_sha256`, :func:`sha256_from_cid`,
  :func:`compute_raw_cid`);
- larger content (images may be) is a UnixFS file whose root is a ``dag-pb`` node
  (``bafybei…``), not a hash of the bytes; :func:`compute_cid` computes it all the same.

:class:`LocalStore` keeps whole files on disk keyed by either kind of CID and recomputes the CID
of every file it reads, so corrupted or tampered bytes are never returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from multiformats import CID, multihash

from generation import unixfs

__all__ = [
    "CHUNK_SIZE",
    "ContentCorrupted",
    "ContentNotFound",
    "ContentTooLarge",
    "InvalidCID",
    "IpfsError",
    "LocalStore",
    "canonical_cid",
    "cid_from_sha256",
    "compute_cid",
    "compute_raw_cid",
    "parse_cid",
    "sha256_from_cid",
]

#: Kubo's default chunker (``size-262144``): content up to this many bytes is a single block.
CHUNK_SIZE = unixfs.CHUNK_SIZE

_RAW_CODEC = "raw"  # multicodec 0x55: a single-chunk file, or a leaf
_DAG_PB_CODEC = "dag-pb"  # multicodec 0x70: the root of a multi-chunk UnixFS file
_HASH = "sha2-256"  # multicodec 0x12
_BASE = "base32"  # multibase 'b', lowercase RFC 4648 without padding
_SHA256_LEN = 32


class IpfsError(Exception):
    """Base class for content-addressing and pinning errors, so callers can catch them all."""


class ContentTooLarge(IpfsError, ValueError):
    """Content exceeds one Kubo chunk, so its CID is a dag-pb root, not a sha256 of the bytes."""


class InvalidCID(IpfsError, ValueError):
    """A CID string is malformed or not of a form this project produces."""


class ContentNotFound(IpfsError, KeyError):
    """The store holds no content for the requested CID."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else "content not found"


class ContentCorrupted(IpfsError):
    """Stored bytes no longer hash to their CID (disk corruption or tampering)."""


def _cid_for_digest(digest: bytes) -> str:
    return str(CID(_BASE, 1, _RAW_CODEC, multihash.wrap(digest, _HASH)))


def compute_cid(data: bytes) -> str:
    """Return the CID Kubo gives ``data`` with ``add --cid-version=1 --raw-leaves``.

    At most one chunk: the raw CID (sha256 of the bytes). More: the dag-pb root of the
    UnixFS file, built as Kubo builds it (see :mod:`generation.unixfs`).
    """
    if len(data) <= CHUNK_SIZE:  # the common case, without building a DAG
        return _cid_for_digest(hashlib.sha256(data).digest())
    return str(unixfs.file_cid(data))


def compute_raw_cid(data: bytes) -> str:
    """Return the raw CID of single-chunk ``data``: the one form the contract can express.

    Use it for token metadata, whose sha256 goes on-chain: larger content would get a dag-pb
    root CID from Kubo, which no sha256 of the bytes can name.
    """
    size = len(data)
    if size > CHUNK_SIZE:
        raise ContentTooLarge(
            f"content is {size} bytes, over the single-chunk limit of {CHUNK_SIZE} bytes; "
            "Kubo stores it as a multi-block UnixFS file whose dag-pb root CID is not the "
            "sha256 of the bytes, so the contract cannot name it"
        )
    return _cid_for_digest(hashlib.sha256(data).digest())


def cid_from_sha256(digest: bytes) -> str:
    """Turn an on-chain sha256 digest into the ``ipfs://`` CID string for the same bytes."""
    if len(digest) != _SHA256_LEN:
        raise InvalidCID(f"sha256 digest must be {_SHA256_LEN} bytes, got {len(digest)}")
    return _cid_for_digest(bytes(digest))


def parse_cid(cid: str, *, codecs: tuple[str, ...] = (_RAW_CODEC, _DAG_PB_CODEC)) -> CID:
    """Parse ``cid`` and check it is a CIDv1 over a sha2-256 digest with one of ``codecs``.

    CIDv0 (``Qm…``) is refused: this project only writes and serves CIDv1, and one form per
    content keeps file names, ETags and on-chain values comparable as strings.
    """
    if not isinstance(cid, str) or not cid:
        raise InvalidCID(f"CID must be a non-empty string, got {cid!r}")
    try:
        parsed = CID.decode(cid)
    except Exception as exc:  # multiformats raises several error types for bad input
        raise InvalidCID(f"malformed CID {cid!r}: {exc}") from exc
    if parsed.version != 1:
        raise InvalidCID(f"CID {cid!r} is version {parsed.version}, expected 1")
    if parsed.codec.name not in codecs:
        raise InvalidCID(
            f"CID {cid!r} has codec {parsed.codec.name}, expected {' or '.join(codecs)}"
        )
    if parsed.hashfun.name != _HASH:
        raise InvalidCID(f"CID {cid!r} uses hash {parsed.hashfun.name}, expected {_HASH}")
    if len(parsed.raw_digest) != _SHA256_LEN:
        raise InvalidCID(f"CID {cid!r} has a {len(parsed.raw_digest)}-byte digest")
    return parsed


def sha256_from_cid(cid: str) -> bytes:
    """Extract the sha256 digest (what the contract stores) from a CIDv1 raw sha2-256 CID."""
    return bytes(parse_cid(cid, codecs=(_RAW_CODEC,)).raw_digest)


def canonical_cid(cid: str) -> str:
    """Validate ``cid`` and return its canonical base32 form (file names, ETags, comparisons)."""
    return str(parse_cid(cid).set(base=_BASE))


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
