"""The ``pinning-service`` backend: an IPFS Pinning Service API, with a Kubo node providing the
bytes; real HTTP servers on 127.0.0.1 (tests/ipfs_servers.py) play services that pin, stall,
fail, name another CID or refuse the token.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from ipfs.cid import CHUNK_SIZE, compute_cid
from ipfs.errors import BackendRejected, CidMismatch, PinTimeout, RemotePinFailed
from ipfs.tree import build_tree
from tests.ipfs_servers import (
    DELEGATE,
    KUBO_VERSION,
    PEER_ID,
    KuboRpcServer,
    PinningServiceServer,
    service_pinner,
)
from tests.test_ipfs import make_folder

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # one chunk
BIG_IMAGE = b"\x89PNG\r\n\x1a\n" + os.urandom(3 * CHUNK_SIZE)  # four chunks: a dag-pb root


def test_it_provides_the_bytes_then_has_the_service_pin_them(kubo: KuboRpcServer) -> None:
    with PinningServiceServer(polls_to_pin=3).running() as service:
        pinner = service_pinner(service, kubo)
        cid = pinner.pin(BIG_IMAGE, name="alpha #1 image")

        assert cid == compute_cid(BIG_IMAGE)
        assert cid in kubo.pins  # our node holds and provides the bytes
        (request,) = service.requests.values()
        assert request["cid"] == cid and request["status"] == "pinned"
        assert request["name"] == "alpha #1 image"
        # only the node's public address is offered as an origin
        assert request["origins"] == [f"/dns4/provider.example/tcp/4001/p2p/{PEER_ID}"]
        assert kubo.connected == [DELEGATE]
        assert pinner.has(cid)
        assert pinner.get(cid) == BIG_IMAGE


def test_it_provides_a_folder_then_has_the_service_pin_its_root(
    kubo: KuboRpcServer, tmp_path: Path
) -> None:
    built = build_tree(make_folder(tmp_path / "model"))
    with PinningServiceServer(polls_to_pin=2).running() as service:
        root = service_pinner(service, kubo).pin_tree(built, name="alpha diffusion weights")
        assert root == built.root and kubo.pins == {root}
        (request,) = service.requests.values()
        assert (request["cid"], request["status"]) == (root, "pinned")
        assert request["name"] == "alpha diffusion weights"


def test_it_does_not_ask_twice_for_a_pinned_cid(kubo: KuboRpcServer) -> None:
    with PinningServiceServer().running() as service:
        pinner = service_pinner(service, kubo)
        first = pinner.pin(IMAGE)
        second = pinner.pin(IMAGE)
        assert first == second
        assert service.count("POST") == 1
        assert len(service.requests) == 1


def test_it_follows_a_request_already_in_progress(kubo: KuboRpcServer) -> None:
    with PinningServiceServer(polls_to_pin=2).running() as service:
        # Given a request for the same CID already queued (say, by a worker that crashed)
        cid = compute_cid(IMAGE)
        queued = httpx.post(
            f"{service.url}/pins",
            json={"cid": cid, "name": "earlier"},
            headers={"Authorization": f"Bearer {service.token}"},
        )
        assert queued.json()["status"] == "queued"
        # When we pin the same bytes
        assert service_pinner(service, kubo).pin(IMAGE) == cid
        # Then no second request was made: the queued one was followed until pinned
        assert service.count("POST") == 1
        assert service.requests[queued.json()["requestid"]]["status"] == "pinned"


def test_it_replaces_a_request_left_queued_past_its_deadline(kubo: KuboRpcServer) -> None:
    with PinningServiceServer(behaviour="stuck-then-pins").running() as service:
        cid = service_pinner(service, kubo, deadline=0.2).pin(IMAGE)
        assert cid == compute_cid(IMAGE)
        assert service.count("POST") == 2
        assert service.count("DELETE", "/pins/1") == 1
        assert list(service.requests) == ["2"]
        assert service.requests["2"]["status"] == "pinned"


def test_it_reports_a_pin_that_stays_queued(kubo: KuboRpcServer) -> None:
    with PinningServiceServer(behaviour="stuck").running() as service:
        with pytest.raises(PinTimeout) as excinfo:
            service_pinner(service, kubo, retries=1, deadline=0.2).pin(IMAGE)
        message = str(excinfo.value)
        assert compute_cid(IMAGE) in message
        assert service.url in message and "queued" in message and "2 requests" in message
        assert service.count("POST") == 2
        assert service.count("DELETE", "/pins/1") == 1
        assert [r["status"] for r in service.requests.values()] == ["queued"]


def test_it_reports_a_pin_the_service_failed(kubo: KuboRpcServer) -> None:
    with (
        PinningServiceServer(behaviour="fails").running() as service,
        pytest.raises(RemotePinFailed, match=f"pinning {compute_cid(IMAGE)} failed"),
    ):
        service_pinner(service, kubo).pin(IMAGE)


def test_it_refuses_a_service_that_names_another_cid(kubo: KuboRpcServer) -> None:
    with PinningServiceServer(behaviour="wrong-cid").running() as service:
        with pytest.raises(CidMismatch) as excinfo:
            service_pinner(service, kubo).pin(IMAGE)
        assert service.url in str(excinfo.value)


def test_it_does_not_retry_a_refused_token(kubo: KuboRpcServer) -> None:
    with PinningServiceServer().running() as service:
        with pytest.raises(BackendRejected, match="HTTP 401") as excinfo:
            service_pinner(service, kubo, token="wrong").pin(IMAGE)
        assert not excinfo.value.retryable
        assert service.count("GET") == 1 and service.count("POST") == 0


def test_it_is_ready_when_the_node_and_the_service_answer(kubo: KuboRpcServer) -> None:
    with PinningServiceServer().running() as service:
        detail = service_pinner(service, kubo).check(timeout=1)
        assert detail.startswith(f"kubo {KUBO_VERSION} at {kubo.url}, import settings")
        assert detail.endswith(f", pinning service {service.url}")
        assert service.count("GET") == 1


def test_it_is_not_ready_when_the_service_refuses_the_token(kubo: KuboRpcServer) -> None:
    with (
        PinningServiceServer().running() as service,
        pytest.raises(BackendRejected, match="HTTP 401"),
    ):
        service_pinner(service, kubo, token="wrong").check(timeout=1)
