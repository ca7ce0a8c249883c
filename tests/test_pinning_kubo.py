"""The ``kubo`` backend: a Kubo node's RPC API, a verified CID back or an error that says why.

It talks to a real HTTP server on 127.0.0.1 (tests/ipfs_servers.py) that behaves like a healthy
Kubo node, a node that times out, a node that names our bytes with another CID, and a node that
corrupts what it serves.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from ipfs.backends.kubo import KuboPinner
from ipfs.cid import CHUNK_SIZE, compute_cid
from ipfs.errors import (
    BackendUnavailable,
    CidMismatch,
    ContentCorrupted,
    IncompatibleNode,
    RemotePinFailed,
)
from ipfs.profiles import PROFILES, CidProfile
from ipfs.tree import build_tree
from tests.ipfs_servers import BACKOFF, KUBO_VERSION, TIMEOUT, KuboRpcServer, kubo_pinner
from tests.test_ipfs import make_folder

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # one chunk
BIG_IMAGE = b"\x89PNG\r\n\x1a\n" + os.urandom(3 * CHUNK_SIZE)  # four chunks: a dag-pb root


@pytest.mark.parametrize("data", [IMAGE, BIG_IMAGE], ids=["single-chunk", "four-chunks"])
def test_it_pins_with_kubo_only_after_checking_the_cid(kubo: KuboRpcServer, data: bytes) -> None:
    cid = kubo_pinner(kubo).pin(data)

    assert cid == compute_cid(data)
    assert cid.startswith("bafkrei" if len(data) <= CHUNK_SIZE else "bafybei")
    assert [name for name, _ in kubo.calls] == ["add", "pin/add", "block/stat"]
    add_params = kubo.calls[0][1]
    assert add_params["cid-version"] == "1" and add_params["raw-leaves"] == "true"
    assert add_params["chunker"] == "size-262144" and add_params["pin"] == "false"
    assert kubo.calls[1][1]["arg"] == cid
    assert kubo.pins == {cid}


def test_it_reads_back_from_kubo(kubo: KuboRpcServer) -> None:
    pinner = kubo_pinner(kubo)
    cid = pinner.pin(BIG_IMAGE)
    assert pinner.has(cid)
    assert pinner.get(cid) == BIG_IMAGE
    assert not pinner.has(compute_cid(b"never pinned"))


def test_it_refuses_a_cid_that_kubo_computed_differently() -> None:
    # Given a node that ignores --raw-leaves (as an old or misconfigured Kubo would)
    with KuboRpcServer(behaviour="wrong-cid").running() as kubo:
        # When we pin an image
        with pytest.raises(CidMismatch) as excinfo:
            kubo_pinner(kubo).pin(IMAGE)
        # Then the stage fails, naming both CIDs, and nothing is pinned on the node
        error = excinfo.value
        assert error.expected == compute_cid(IMAGE)
        assert error.got.startswith("bafybei") and error.got != error.expected
        assert error.expected in str(error) and error.got in str(error)
        assert kubo.url in str(error)
        assert not error.retryable
        assert kubo.pins == set()
        assert kubo.calls_to("pin/add") == 0


def test_it_retries_a_node_that_times_out_then_says_so() -> None:
    with KuboRpcServer(behaviour="times-out").running() as kubo:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as excinfo:
            kubo_pinner(kubo, retries=2).pin(IMAGE)
        elapsed = time.monotonic() - started
        assert kubo.calls_to("add") == 3  # one try and two retries
        message = str(excinfo.value)
        assert kubo.url in message and "add" in message and "3 tries" in message
        assert "Timeout" in message
        assert excinfo.value.retryable
        assert elapsed < 3 * TIMEOUT + 2  # it gave up; it did not wait for the node
        assert kubo.pins == set()


def test_it_pins_when_the_node_answers_a_retry() -> None:
    with KuboRpcServer(behaviour="times-out", hang_first=1).running() as kubo:
        cid = kubo_pinner(kubo).pin(IMAGE)
        assert cid == compute_cid(IMAGE)
        assert kubo.calls_to("add") == 2
        assert kubo.pins == {cid}


def test_it_reports_a_node_that_is_not_listening() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pinner = KuboPinner(f"http://127.0.0.1:{port}", timeout=TIMEOUT, retries=1, backoff=BACKOFF)
    with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{port}.*2 tries.*ConnectError"):
        pinner.pin(IMAGE)


def test_it_never_returns_bytes_that_do_not_match_their_cid() -> None:
    with KuboRpcServer(behaviour="corrupts").running() as kubo:
        pinner = kubo_pinner(kubo)
        cid = pinner.pin(IMAGE)
        with pytest.raises(ContentCorrupted, match=cid):
            pinner.get(cid)


def test_it_passes_on_what_kubo_says_went_wrong(kubo: KuboRpcServer) -> None:
    missing = compute_cid(b"not on this node")
    with pytest.raises(RemotePinFailed, match="could not find node"):
        kubo_pinner(kubo).get(missing)


def test_it_is_ready_when_the_node_builds_every_profile(kubo: KuboRpcServer) -> None:
    pinner = kubo_pinner(kubo)
    assert pinner.check(timeout=1) == (
        f"kubo {KUBO_VERSION} at {kubo.url}, import settings Kubo's defaults "
        "(each add states its collection's profile)"
    )
    # the version, the node's Import config, then one hash-only probe per profile
    assert [name for name, _ in kubo.calls] == ["version", "config", "add", "add"]
    probes = [params for name, params in kubo.calls if name == "add"]
    assert [p["chunker"] for p in probes] == [p.chunker for p in PROFILES.values()]
    assert all(p["only-hash"] == "true" for p in probes) and not kubo.files
    # the probe runs again only when the version or the Import config changes
    pinner.check(timeout=1)
    assert [name for name, _ in kubo.calls[4:]] == ["version", "config"]


def test_it_names_a_node_configured_with_the_new_profile() -> None:
    config = {"CidVersion": 1, "UnixFSRawLeaves": True, "UnixFSChunker": "size-1048576"}
    config |= {"UnixFSFileMaxLinks": 1024, "HashFunction": None}
    with KuboRpcServer(import_config=config).running() as kubo:
        assert "import settings unixfs-v1-2025" in kubo_pinner(kubo).check(timeout=1)


def test_a_node_whose_config_overrides_the_chunker_is_not_ready() -> None:
    config = {"UnixFSChunker": "size-1048576"}
    with KuboRpcServer(behaviour="ignores-chunker", import_config=config).running() as kubo:
        with pytest.raises(IncompatibleNode, match="UnixFSChunker=size-1048576") as excinfo:
            kubo_pinner(kubo).check(timeout=1)
        assert "legacy" in str(excinfo.value)
        assert not excinfo.value.retryable


def test_a_kubo_older_than_max_file_links_is_not_ready() -> None:
    with (
        KuboRpcServer(version="0.34.1").running() as kubo,
        pytest.raises(IncompatibleNode, match=r"Kubo 0\.34\.1 ignores max-file-links"),
    ):
        kubo_pinner(kubo).check(timeout=1)


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_it_asks_kubo_to_import_with_the_profile(kubo: KuboRpcServer, profile: CidProfile) -> None:
    # 1 MiB + 1: four legacy chunks, two unixfs-v1-2025 chunks; a dag-pb root either way
    data = bytes(range(256)) * 4096 + b"!"
    cid = kubo_pinner(kubo).pin(data, profile=profile)

    assert cid == compute_cid(data, profile) and kubo.pins == {cid}
    add = kubo.calls[0][1]
    assert add["chunker"] == profile.chunker
    assert add["max-file-links"] == str(profile.max_links)
    assert (add["cid-version"], add["raw-leaves"], add["trickle"]) == ("1", "true", "false")


def test_it_asks_a_silent_node_once_when_checking_readiness() -> None:
    with KuboRpcServer(behaviour="times-out").running() as kubo:
        with pytest.raises(BackendUnavailable) as excinfo:
            kubo_pinner(kubo, retries=3).check(timeout=0.2)
        assert kubo.calls_to("version") == 1  # a health check does not wait out the retries
        assert excinfo.value.last_error.startswith("ReadTimeout")
        assert excinfo.value.where == f"Kubo RPC at {kubo.url}/api/v0"


def test_it_pins_a_folder_with_kubo_block_by_block(kubo: KuboRpcServer, tmp_path: Path) -> None:
    built = build_tree(make_folder(tmp_path / "model"))
    assert kubo_pinner(kubo).pin_tree(built) == built.root
    # each file added unpinned and checked, each directory node put as dag-pb, the root pinned
    calls = [name for name, _ in kubo.calls]
    assert calls == ["add"] * len(built.files) + ["block/put"] * 5 + ["pin/add", "block/stat"]
    assert all(p["cid-codec"] == "dag-pb" for n, p in kubo.calls if n == "block/put")
    assert kubo.pins == {built.root}
    assert set(kubo.blocks) == {str(b.cid) for b in built.directories}


def test_a_folder_is_not_pinned_when_kubo_names_a_file_otherwise(tmp_path: Path) -> None:
    built = build_tree(make_folder(tmp_path / "model"))
    with KuboRpcServer(behaviour="wrong-cid").running() as kubo:
        with pytest.raises(CidMismatch):
            kubo_pinner(kubo).pin_tree(built)
        assert kubo.calls_to("block/put") == 0 and kubo.pins == set()
