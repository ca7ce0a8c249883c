"""CIDs for token metadata and images, computed without a node.

Every CID here is what ``ipfs add --cid-version=1 --raw-leaves`` gives the same bytes under a
CID profile (:mod:`ipfs.profiles`): by default ``legacy``, Kubo's classic chunker
``size-262144`` with 174 links per node; ``unixfs-v1-2025`` (IPIP-499) cuts 1 MiB chunks with
1024 links per node. Both use a balanced layout and sha2-256; the DAG is built in
:mod:`ipfs.unixfs`:

- content of at most one chunk (262144 bytes under either profile) is a single raw block, so its CID (CIDv1, ``raw``
  codec, ``bafkrei…``) is a plain sha256 of the bytes. Token metadata must be of this kind: the
  contract stores the sha256 digest of the metadata bytes and ``tokenURI`` rebuilds
  ``ipfs://<CIDv1 raw sha2-256>`` from it (:func:`cid_from_sha256`, :func:`sha256_from_cid`,
  :func:`compute_raw_cid`);
- larger content (images may be) is a UnixFS file whose root is a ``dag-pb`` node
  (``bafybei…``), not a hash of the bytes; :func:`compute_cid` computes it all the same.

The store that keeps bytes under these CIDs is :mod:`ipfs.store`; the errors are in
:mod:`ipfs.errors`.
"""

from __future__ import annotations

import hashlib

from multiformats import CID, multihash

from ipfs import unixfs
from ipfs.errors import ContentTooLarge, InvalidCID
from ipfs.profiles import LEGACY, PROFILES, CidProfile

__all__ = [
    "CHUNK_SIZE",
    "canonical_cid",
    "cid_from_sha256",
    "compute_cid",
    "compute_raw_cid",
    "matches_cid",
    "parse_cid",
    "sha256_from_cid",
]

#: The smallest chunk of any profile (``legacy``'s ``size-262144``): content up to this many
#: bytes is a single raw block whatever the profile, so its CID is the sha256 of the bytes.
CHUNK_SIZE = min(p.chunk_size for p in PROFILES.values())

_RAW_CODEC = "raw"  # multicodec 0x55: a single-chunk file, or a leaf
_DAG_PB_CODEC = "dag-pb"  # multicodec 0x70: the root of a multi-chunk UnixFS file
_HASH = "sha2-256"  # multicodec 0x12
_BASE = "base32"  # multibase 'b', lowercase RFC 4648 without padding
_SHA256_LEN = 32


def _cid_for_digest(digest: bytes) -> str:
    return str(CID(_BASE, 1, _RAW_CODEC, multihash.wrap(digest, _HASH)))


def compute_cid(data: bytes, profile: CidProfile = LEGACY) -> str:
    """Return the CID Kubo gives ``data`` with ``add --cid-version=1 --raw-leaves`` under
    ``profile``.

    At most one chunk: the raw CID (sha256 of the bytes). More: the dag-pb root of the
    UnixFS file, built as Kubo builds it (see :mod:`ipfs.unixfs`).
    """
    if len(data) <= profile.chunk_size:  # the common case, without building a DAG
        return _cid_for_digest(hashlib.sha256(data).digest())
    return str(unixfs.file_cid(data, chunk_size=profile.chunk_size, max_links=profile.max_links))


def matches_cid(data: bytes, cid: str) -> CidProfile | None:
    """The profile under which ``data`` gives ``cid`` (any multibase), or None.

    For readers that hold a CID and not the profile it was made with (the local store, the
    gateway, a backend's read-back): the CID commits to the bytes under whichever profile
    built it, so finding one profile that rebuilds it checks the bytes.
    """
    wanted = canonical_cid(cid)
    if len(data) <= CHUNK_SIZE:  # one raw block in every profile
        return LEGACY if compute_cid(data) == wanted else None
    for profile in PROFILES.values():
        if compute_cid(data, profile) == wanted:
            return profile
    return None


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
