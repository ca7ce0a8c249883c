"""Pinning backends as the pin stage sees them: a verified CID back, or an error that says why.

The remote backends talk to real HTTP servers on 127.0.0.1 (tests/ipfs_servers.py) that behave
like a healthy Kubo node, a node that times out, a node that names our bytes with another CID,
and pinning services that pin, stall or fail.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from generation.ipfs import CHUNK_SIZE, ContentCorrupted, LocalStore, compute_cid
from generation.pinning import (
    BackendRejected,
    BackendUnavailable,
    CidMismatch,
    KuboPinner,
    LocalPinner,
    PinningServicePinner,
    PinTimeout,
    RemotePinFailed,
    pinner_from_settings,
)
from tests.ipfs_servers import DELEGATE, PEER_ID, KuboRpcServer, PinningServiceServer

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # one chunk
BIG_IMAGE = b"\x89PNG\r\n\x1a\n" + os.urandom(3 * CHUNK_SIZE)  # four chunks: a dag-pb root
METADATA = b'{"name":"token 1"}'

# Short enough to keep the failure tests quick, long enough for a loaded CI machine.
TIMEOUT = 0.3
BACKOFF = 0.01


@pytest.fixture
def kubo() -> Iterator[KuboRpcServer]:
    with KuboRpcServer().running() as server:
        yield server


def kubo_pinner(server: KuboRpcServer, retries: int = 2) -> KuboPinner:
    return KuboPinner(server.url, timeout=TIMEOUT, retries=retries, backoff=BACKOFF)


def service_pinner(
    service: PinningServiceServer,
    kubo: KuboRpcServer,
    *,
    retries: int = 2,
    deadline: float = 2.0,
    token: str | None = None,
) -> PinningServicePinner:
    return PinningServicePinner(
        service.url,
        token or service.token,
        provider=kubo_pinner(kubo),
        deadline=deadline,
        poll_interval=0.02,
        timeout=TIMEOUT,
        retries=retries,
        backoff=BACKOFF,
    )


# --- local ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [METADATA, BIG_IMAGE], ids=["single-chunk", "four-chunks"])
def test_it_pins_to_the_local_store_and_reads_back(tmp_path: Path, data: bytes) -> None:
    pinner = LocalPinner(LocalStore(tmp_path))
    cid = pinner.pin(data)
    assert cid == compute_cid(data)
    assert pinner.has(cid)
    assert pinner.get(cid) == data


def test_it_uses_the_local_store_by_default(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_STORE_DIR = tmp_path / "ipfs"
    pinner = pinner_from_settings()
    assert isinstance(pinner, LocalPinner)
    assert pinner is pinner_from_settings()  # one instance per configuration
    cid = pinner.pin(METADATA)
    assert LocalStore(tmp_path / "ipfs").get(cid) == METADATA


# --- Kubo ----------------------------------------------------------------------------------------


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


# --- pinning service -----------------------------------------------------------------------------


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


# --- configuration -------------------------------------------------------------------------------


def test_it_pins_through_the_configured_kubo(settings, kubo: KuboRpcServer) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_BACKEND = "kubo"
    settings.IPFS_KUBO_URL = kubo.url
    assert pinner_from_settings().pin(IMAGE) == compute_cid(IMAGE)
    assert kubo.pins == {compute_cid(IMAGE)}


def test_it_builds_the_pinning_service_backend_from_settings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_BACKEND = "pinning-service"
    settings.IPFS_PINNING_SERVICE_URL = "https://pins.example/psa"
    settings.IPFS_PINNING_SERVICE_TOKEN = "t0ken"
    pinner = pinner_from_settings()
    assert isinstance(pinner, PinningServicePinner)
    assert isinstance(pinner.provider, KuboPinner)
    assert pinner.provider.url == settings.IPFS_KUBO_URL


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"IPFS_BACKEND": "s3"}, "IPFS_BACKEND='s3' is not one of local, kubo, pinning-service"),
        ({"IPFS_BACKEND": "kubo", "IPFS_KUBO_URL": "127.0.0.1:5001"}, "IPFS_KUBO_URL"),
        ({"IPFS_BACKEND": "kubo", "IPFS_TIMEOUT": 0}, "IPFS_TIMEOUT=0 must be positive"),
        (
            {"IPFS_BACKEND": "pinning-service", "IPFS_PINNING_SERVICE_URL": "https://p.example"},
            "IPFS_PINNING_SERVICE_TOKEN",
        ),
        (
            {"IPFS_BACKEND": "pinning-service", "IPFS_PINNING_SERVICE_TOKEN": "t"},
            "IPFS_PINNING_SERVICE_URL",
        ),
    ],
)
def test_it_names_the_setting_that_is_wrong(settings, overrides: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_PINNING_SERVICE_URL = ""
    settings.IPFS_PINNING_SERVICE_TOKEN = None
    for name, value in overrides.items():
        setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        pinner_from_settings()


def test_it_reads_the_ipfs_settings_from_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mintsite.settings",
        "DJANGO_SECRET_KEY": "test",
        "MINT_VAR_DIR": str(tmp_path / "var"),
        "IPFS_BACKEND": "Pinning-Service",
        "IPFS_KUBO_URL": "http://kubo:5001/",
        "IPFS_PINNING_SERVICE_URL": "https://pins.example/psa/",
        "IPFS_PINNING_SERVICE_TOKEN_FILE": str(token_file),
        "IPFS_RETRIES": "5",
    }
    names = [
        "IPFS_BACKEND",
        "IPFS_KUBO_URL",
        "IPFS_TIMEOUT",
        "IPFS_RETRIES",
        "IPFS_RETRY_BACKOFF",
        "IPFS_PINNING_SERVICE_URL",
        "IPFS_PINNING_SERVICE_TOKEN",
        "IPFS_PIN_DEADLINE",
        "IPFS_PIN_POLL_INTERVAL",
    ]
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == {
        "IPFS_BACKEND": "pinning-service",
        "IPFS_KUBO_URL": "http://kubo:5001",
        "IPFS_TIMEOUT": 60.0,
        "IPFS_RETRIES": 5,
        "IPFS_RETRY_BACKOFF": 0.5,
        "IPFS_PINNING_SERVICE_URL": "https://pins.example/psa",
        "IPFS_PINNING_SERVICE_TOKEN": "s3cret",
        "IPFS_PIN_DEADLINE": 60.0,
        "IPFS_PIN_POLL_INTERVAL": 2.0,
    }
