"""``/healthz`` and ``/readyz`` against the real database, Redis, anvil and IPFS store, and
against real failures: ports nobody listens on, a node that accepts and never answers, an RPC
that serves another chain."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from chain.anvil import Anvil, free_port
from chain.models import Chain
from foundation.broker_contents import broker_kind

pytestmark = pytest.mark.django_db


def closed_url(scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{free_port()}"


def broker_at(url: str) -> dict[str, Any]:
    """Settings that point the broker's checks at ``url`` (Redis or RabbitMQ, by its scheme)."""
    return {"BROKER_URL": url, "BROKER_KIND": broker_kind(url)}


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never says a word (a hung node)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def readyz() -> tuple[int, dict[str, dict[str, Any]]]:
    response = Client().get("/readyz")
    body = response.json()
    assert body["status"] == ("ready" if response.status_code == 200 else "not ready")
    return response.status_code, {check["name"]: check for check in body["checks"]}


def test_it_says_the_process_is_up_without_touching_anything() -> None:
    # even with every dependency pointing nowhere
    with override_settings(RPC_URL=closed_url(), **broker_at(closed_url("redis"))):
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.rabbitmq
def test_it_is_ready_when_database_broker_chain_and_ipfs_answer(anvil: Anvil) -> None:
    Chain.objects.create(chain_id=31337, rpc_urls=anvil.rpc_url)
    status, checks = readyz()
    assert status == 200
    assert list(checks) == ["database", "broker", "chain:31337", "ipfs"]
    assert all(check["ok"] for check in checks.values()), checks
    assert checks["chain:31337"]["detail"].startswith("chain 31337 at block ")
    assert checks["ipfs"]["detail"] == f"local store {settings.IPFS_STORE_DIR}"
    assert checks["broker"]["detail"].startswith(settings.BROKER_KIND)  # redis or rabbitmq


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_it_is_not_ready_with_the_broker_and_the_chain_down_and_names_both(broker: str) -> None:
    rpc = closed_url()
    with override_settings(RPC_URL=rpc, **broker_at(closed_url(broker))):
        status, checks = readyz()
    assert status == 503
    assert checks["database"]["ok"] and checks["ipfs"]["ok"]
    assert not checks["broker"]["ok"]
    assert "Connection refused" in checks["broker"]["error"]
    assert not checks["chain"]["ok"]
    assert checks["chain"]["error"].startswith(f"no RPC URL answered within 2.0 s: {rpc}")


@override_settings(HEALTH_CHECK_TIMEOUT=0.5)
def test_it_gives_up_on_a_node_that_never_answers(silent_server: str) -> None:
    Chain.objects.create(chain_id=31337, rpc_urls=silent_server)
    status, checks = readyz()
    assert status == 503
    assert checks["chain:31337"]["error"].startswith("no RPC URL answered within 0.5 s")
    assert "ReadTimeout" in checks["chain:31337"]["error"]


def test_it_is_not_ready_when_the_rpc_serves_another_chain(anvil: Anvil) -> None:
    Chain.objects.create(chain_id=5, rpc_urls=anvil.rpc_url)
    status, checks = readyz()
    assert status == 503
    assert checks["chain:5"]["error"] == f"the RPC at {anvil.rpc_url} serves chain 31337, not 5"


def test_it_is_not_ready_when_the_kubo_node_is_down() -> None:
    kubo = closed_url()
    with override_settings(IPFS_BACKEND="kubo", IPFS_KUBO_URL=kubo):
        status, checks = readyz()
    assert status == 503
    assert checks["ipfs"]["error"].startswith("kubo: ConnectError")


def test_with_a_metrics_token_it_answers_status_alone_to_a_client_without_it() -> None:
    # Given a METRICS_TOKEN (production always has one) and a broker that is down
    broker = closed_url("redis")
    with override_settings(METRICS_TOKEN="s3cret-probe-token", **broker_at(broker)):
        # When a client on the internet asks, with no token or a wrong one
        anonymous = Client().get("/readyz")
        guessed = Client().get("/readyz", headers={"Authorization": "Bearer s3cret"})
        # and the operator's probe asks with it
        operator = Client().get("/readyz", headers={"Authorization": "Bearer s3cret-probe-token"})

    # Then the load balancer still reads 503, but only the operator learns hosts and errors
    for response in (anonymous, guessed):
        assert response.status_code == 503
        assert set(response.json()) == {"status", "checks_hidden"}
        assert broker.removeprefix("redis://") not in response.content.decode()
    assert operator.status_code == 503
    checks = {check["name"]: check for check in operator.json()["checks"]}
    assert "Connection refused" in checks["broker"]["error"]
