"""The ``local`` backend: the store on disk that the gateway view serves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipfs.backends.local import LocalPinner
from ipfs.cid import CHUNK_SIZE, compute_cid
from ipfs.errors import ContentCorrupted, StoreNotWritable
from ipfs.store import LocalStore
from ipfs.tree import build_tree, fetch_tree
from tests.test_ipfs import make_folder

BIG_IMAGE = b"\x89PNG\r\n\x1a\n" + os.urandom(3 * CHUNK_SIZE)  # four chunks: a dag-pb root
METADATA = b'{"name":"token 1"}'


@pytest.mark.parametrize("data", [METADATA, BIG_IMAGE], ids=["single-chunk", "four-chunks"])
def test_it_pins_to_the_local_store_and_reads_back(tmp_path: Path, data: bytes) -> None:
    pinner = LocalPinner(LocalStore(tmp_path))
    cid = pinner.pin(data)
    assert cid == compute_cid(data)
    assert pinner.has(cid)
    assert pinner.get(cid) == data


def test_it_is_ready_before_the_first_write_made_the_store(tmp_path: Path) -> None:
    root = tmp_path / "var" / "ipfs"
    assert LocalPinner(LocalStore(root)).check(timeout=1) == f"local store {root}"
    assert not root.exists()  # the check writes nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
def test_it_is_not_ready_when_the_store_cannot_be_written(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StoreNotWritable, match=f"{tmp_path / 'ipfs'} cannot be written"):
            LocalPinner(LocalStore(tmp_path / "ipfs")).check(timeout=1)
    finally:
        tmp_path.chmod(0o700)


def test_it_pins_a_folder_and_serves_it_back_block_by_block(tmp_path: Path) -> None:
    built = build_tree(make_folder(tmp_path / "model"))
    store = LocalStore(tmp_path / "store")
    assert LocalPinner(store).pin_tree(built) == built.root
    assert LocalPinner(store).has(built.root)
    # a verifier fetching it by CID alone, from what the gateway's store answers
    out = fetch_tree(built.root, tmp_path / "out", get_block=store.block, get_file=store.get)
    assert build_tree(out).root == built.root


def test_a_tampered_directory_block_is_never_served(tmp_path: Path) -> None:
    built = build_tree(make_folder(tmp_path / "model"))
    store = LocalStore(tmp_path / "store")
    LocalPinner(store).pin_tree(built)
    (path,) = (store.root / "blocks").rglob(built.root)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ContentCorrupted, match=f"does not hash to {built.root}"):
        store.block(built.root)
