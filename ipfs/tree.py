"""A model folder (or a single file) as IPFS names it, and read back from IPFS by its CID alone.

:func:`build_tree` gives a path the CID ``ipfs add -r --cid-version=1 --raw-leaves`` gives it
under a CID profile (:mod:`ipfs.profiles`; ``legacy``, Kubo's classic defaults, unless told):
each file a UnixFS file (its :func:`~ipfs.cid.compute_cid`), each folder a plain UnixFS
directory of its entries. As
``ipfs add -r`` does without ``--hidden``, names starting with ``.`` are left out; unlike it, a
symbolic link is followed (a Hugging Face cache folder is made of links to blobs, and what is
published is the content), so the CID is that of ``ipfs add -r --dereference-symlinks``.

:func:`fetch_tree` rebuilds the folder from a CID through two callables that fetch from
anywhere (a gateway, a node): ``get_block`` the raw bytes of a directory node, ``get_file`` a
whole file. Nothing is trusted: a directory block must hash to its CID, a file must give its
CID again when chunked here, and entry names must be plain names (no ``/``, ``..`` or NUL), so a
lying source can make the fetch fail, never write other bytes or write outside the folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from multiformats import CID

from ipfs import unixfs
from ipfs.cid import canonical_cid, compute_cid, parse_cid
from ipfs.errors import ContentCorrupted, IpfsError
from ipfs.profiles import LEGACY, CidProfile

__all__ = [
    "TREE_SCHEME",
    "Tree",
    "TreeFile",
    "build_tree",
    "fetch_tree",
    "tree_cid",
    "tree_scheme",
]

#: How the CIDs are made under the legacy profile, in words, for the frozen config.
TREE_SCHEME = (
    "ipfs add -r --cid-version=1 --raw-leaves --dereference-symlinks with Kubo's legacy "
    "defaults (size-262144 chunks, balanced layout, 174 links per node, sha2-256, plain "
    "directories); names starting with '.' left out"
)


def tree_scheme(profile: CidProfile = LEGACY) -> str:
    """How :func:`build_tree` makes CIDs under ``profile``, in words (the legacy profile's
    words are those frozen before profiles existed, so its configs keep their digests)."""
    if profile == LEGACY:
        return TREE_SCHEME
    return (
        f"ipfs add -r --cid-version=1 --raw-leaves --dereference-symlinks with the "
        f"{profile.name} CID profile ({profile.chunker} chunks, balanced layout, "
        f"{profile.max_links} links per node, sha2-256, plain directories of at most "
        f"{profile.hamt_threshold} bytes by {profile.hamt_estimation}); names starting with "
        "'.' left out"
    )


MAX_DEPTH = 32  # folders below folders a fetched tree may hold


class TreeError(IpfsError, ValueError):
    """A path that cannot be published as a tree, or a tree that cannot be fetched as asked."""


@dataclass(frozen=True)
class TreeFile:
    """One file of a tree: where it is below the root (``""`` for a lone file), its CID."""

    path: str
    source: Path
    cid: str
    size: int


@dataclass(frozen=True)
class Tree:
    """A path's CID, its files, and its directory nodes (children before parents), under
    ``profile``."""

    root: str
    files: tuple[TreeFile, ...]
    directories: tuple[unixfs.Block, ...]
    profile: CidProfile = LEGACY

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def build_tree(
    path: Path,
    *,
    profile: CidProfile = LEGACY,
    raw_leaves: bool = True,
    cid_version: int = 1,
) -> Tree:
    """The tree of the file or folder at ``path`` under ``profile`` (read whole, one file at
    a time).

    ``raw_leaves=False, cid_version=0`` builds plain ``ipfs add -r`` instead (what the Kubo
    the tests can run produces, to compare with)."""
    path = Path(path)
    files: list[TreeFile] = []
    directories: list[unixfs.Block] = []

    def add_file(source: Path, relative: str) -> tuple[CID, int]:
        data = source.read_bytes()
        cid, tsize = unixfs.file_root(
            data,
            raw_leaves=raw_leaves,
            cid_version=cid_version,
            chunk_size=profile.chunk_size,
            max_links=profile.max_links,
        )
        files.append(TreeFile(relative, source, str(cid), len(data)))
        return cid, tsize

    def add_folder(folder: Path, relative: str) -> tuple[CID, int]:
        entries: list[tuple[str, CID, int]] = []
        for child in sorted(folder.iterdir(), key=lambda p: p.name.encode("utf-8")):
            if child.name.startswith("."):
                continue
            below = f"{relative}/{child.name}" if relative else child.name
            if child.is_dir():
                cid, tsize = add_folder(child, below)
            elif child.is_file():
                cid, tsize = add_file(child, below)
            else:
                raise TreeError(f"{child} is neither a file nor a folder (a broken link?)")
            entries.append((child.name, cid, tsize))
        block = unixfs.directory_block(
            entries, cid_version=cid_version, hamt_estimation=profile.hamt_estimation
        )
        directories.append(block)
        return block.cid, len(block.data) + sum(tsize for _, _, tsize in entries)

    if path.is_dir():
        root, _ = add_folder(path, "")
    elif path.is_file():
        root, _ = add_file(path, "")
    else:
        raise TreeError(f"nothing to publish at {path}")
    return Tree(str(root), tuple(files), tuple(directories), profile)


def tree_cid(path: Path, profile: CidProfile = LEGACY) -> str:
    """The CID of the file or folder at ``path`` under ``profile`` (:func:`build_tree`'s root)."""
    return build_tree(path, profile=profile).root


def fetch_tree(
    cid: str,
    dest: Path,
    *,
    get_block: Callable[[str], bytes],
    get_file: Callable[[str], bytes],
    max_bytes: int | None = None,
    profile: CidProfile = LEGACY,
) -> Path:
    """Write the file or folder named ``cid`` at ``dest`` (which must not exist), every byte
    checked against the CIDs under ``profile``; returns ``dest``. On any error nothing is left
    at ``dest``.

    ``max_bytes`` bounds the files' total size (a hostile directory could name terabytes).
    """
    dest = Path(dest)
    if dest.exists():
        raise TreeError(f"{dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=dest.parent))
    budget = [max_bytes if max_bytes is not None else -1]

    def take(size: int, what: str) -> None:
        if budget[0] < 0:
            return
        budget[0] -= size
        if budget[0] < 0:
            raise TreeError(f"{what} takes the tree past its limit of {max_bytes} bytes")

    def fetch_file(cid: str, out: Path) -> None:
        data = get_file(cid)
        take(len(data), f"file {out.name} ({cid})")
        actual = compute_cid(data, profile)
        if actual != canonical_cid(cid):
            raise ContentCorrupted(f"the bytes served for {cid} ({out.name}) give CID {actual}")
        out.write_bytes(data)

    def fetch(cid: str, out: Path, depth: int) -> None:
        parsed = parse_cid(cid)
        if parsed.codec.name == "raw":
            fetch_file(cid, out)
            return
        block = get_block(cid)
        if hashlib.sha256(block).digest() != bytes(parsed.raw_digest):
            raise ContentCorrupted(f"the block served for {cid} does not hash to its CID")
        node = unixfs.decode_pb_node(block)
        data = unixfs.decode_unixfs_data(node.data or b"")
        if data.type == unixfs.UNIXFS_FILE:
            fetch_file(cid, out)
            return
        if data.type != unixfs.UNIXFS_DIRECTORY:
            kind = "a sharded (HAMT) directory" if data.type == unixfs.UNIXFS_HAMT_SHARD else ""
            raise TreeError(f"{cid} is {kind or f'UnixFS type {data.type}'}: not fetched here")
        if depth > MAX_DEPTH:
            raise TreeError(f"{cid} is more than {MAX_DEPTH} folders deep")
        out.mkdir()
        for link in node.links:
            name = link.name or ""
            if not _plain_name(name):
                raise TreeError(f"directory {cid} has an entry named {name!r}")
            fetch(str(link.hash), out / name, depth + 1)

    try:
        fetch(cid, staging / "tree", 0)
        os.replace(staging / "tree", dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _plain_name(name: str) -> bool:
    return (
        bool(name)
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and PurePosixPath(name).name == name
    )
