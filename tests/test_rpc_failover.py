"""RPC failover against a real anvil behind ``FlakyRpcProxy``: no mocks, no database."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from chain.anvil import ANVIL_ACCOUNTS, Anvil, free_port, start_anvil
from chain.errors import ChainError, RpcUnavailable
from chain.rpc import FailoverHTTPProvider, connect, parse_rpc_urls, rpc_stats
from tests.rpc_proxy import FlakyRpcProxy

ALICE = ANVIL_ACCOUNTS[0].address
# Init code that reverts at once: PUSH1 0 PUSH1 0 REVERT. An eth_call without "to" runs it.
REVERTING_INIT_CODE = "0x60006000fd"
CLIENT_TIMEOUT = 1.0  # the proxy's "timeout" mode stalls 2 s


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with start_anvil() as node:
        Web3(Web3.HTTPProvider(node.rpc_url)).provider.make_request("anvil_mine", [hex(20)])
        yield node


def provider_of(w3: Web3) -> FailoverHTTPProvider:
    assert isinstance(w3.provider, FailoverHTTPProvider)
    return w3.provider


def exercise(w3: Web3) -> None:
    """A mix of reads: single requests of several kinds and one JSON-RPC batch."""
    head = w3.eth.block_number
    assert head >= 20
    assert w3.eth.get_block(head)["number"] == head
    assert w3.eth.get_balance(ALICE) > 0
    assert w3.eth.call({"to": ALICE, "data": "0x"}) == b""
    with w3.batch_requests() as batch:
        batch.add(w3.eth.get_block(1))
        batch.add(w3.eth.get_balance(ALICE))
        block, balance = batch.execute()
    assert block["number"] == 1
    assert balance > 0


def test_it_parses_one_url_a_list_or_a_comma_separated_string() -> None:
    assert parse_rpc_urls("http://a") == ["http://a"]
    assert parse_rpc_urls(" http://a , http://b,") == ["http://a", "http://b"]
    assert parse_rpc_urls(["http://a", "http://b,http://c"]) == ["http://a", "http://b", "http://c"]
    with pytest.raises(ValueError):
        parse_rpc_urls(" , ")


def test_it_fails_over_to_a_healthy_url(anvil: Anvil, caplog: pytest.LogCaptureFixture) -> None:
    with (
        FlakyRpcProxy(anvil.rpc_url, fail_every=3, modes=("http500",)) as flaky,
        FlakyRpcProxy(anvil.rpc_url) as healthy,
    ):
        w3 = connect(f"{flaky.url},{healthy.url}", timeout=CLIENT_TIMEOUT, backoff=0.05)
        with caplog.at_level(logging.WARNING, logger="chain.rpc"):
            for _ in range(4):
                exercise(w3)
        # the 3rd request failed on the flaky URL; from then on the healthy one is current
        assert flaky.requests == 3
        assert flaky.failures_injected == 1
        assert healthy.requests > 10
        assert provider_of(w3).endpoint_uri == healthy.url
        assert rpc_stats(w3) == {
            "requests": flaky.requests + healthy.requests,
            "failures": 1,
            "failovers": 1,
        }
        assert any(
            flaky.url in r.getMessage() and "HTTP 500" in r.getMessage() for r in caplog.records
        )


def test_it_survives_every_failure_mode_on_two_flaky_urls(anvil: Anvil) -> None:
    with (
        FlakyRpcProxy(anvil.rpc_url, fail_every=3) as first,
        FlakyRpcProxy(anvil.rpc_url, fail_every=3) as second,
    ):
        w3 = connect([first.url, second.url], timeout=CLIENT_TIMEOUT, backoff=0.05)
        rounds = 0
        while min(first.failures_injected, second.failures_injected) < 4:
            exercise(w3)
            rounds += 1
            assert rounds < 20, (first, second)
        stats = rpc_stats(w3)
        injected = first.failures_injected + second.failures_injected
        # each proxy cycled http500, drop, timeout, garbage at least once
        assert stats["requests"] == first.requests + second.requests
        assert stats["failures"] == injected
        # after a failure the other URL's next request is never a failing one: no full round fails
        assert stats["failovers"] == injected
        assert first.methods["eth_getBalance"] + second.methods["eth_getBalance"] >= rounds


def test_it_retries_a_single_flaky_url_with_backoff(anvil: Anvil) -> None:
    with FlakyRpcProxy(anvil.rpc_url, fail_every=2, modes=("http500", "drop", "garbage")) as flaky:
        w3 = connect(flaky.url, timeout=CLIENT_TIMEOUT, retries=2, backoff=0.05)
        started = time.monotonic()
        for _ in range(2):
            exercise(w3)
        elapsed = time.monotonic() - started
        assert flaky.failures_injected >= 5
        assert rpc_stats(w3) == {
            "requests": flaky.requests,
            "failures": flaky.failures_injected,
            "failovers": 0,  # one URL: nowhere to move, only backoff
        }
        assert elapsed >= 0.05 * flaky.failures_injected


def test_it_raises_rpc_unavailable_naming_every_url(anvil: Anvil) -> None:
    refused_url = f"http://127.0.0.1:{free_port()}"
    with FlakyRpcProxy(anvil.rpc_url) as down_a, FlakyRpcProxy(anvil.rpc_url) as down_b:
        down_a.down = down_b.down = True
        w3 = connect(
            [down_a.url, refused_url, down_b.url], timeout=CLIENT_TIMEOUT, retries=2, backoff=0.01
        )
        with pytest.raises(RpcUnavailable) as raised:
            w3.eth.get_block("latest")
        message = str(raised.value)
        assert isinstance(raised.value, ChainError)
        assert isinstance(raised.value, ConnectionError)
        assert f"{down_a.url}: HTTP 503" in message
        assert f"{down_b.url}: HTTP 503" in message
        assert f"{refused_url}: ConnectionError" in message
        assert down_a.requests == down_b.requests == 3  # 1 + retries rounds
        assert rpc_stats(w3) == {"requests": 9, "failures": 9, "failovers": 9}
        assert not w3.is_connected()  # RpcUnavailable is an OSError, which is_connected expects

        down_b.down = False
        assert w3.eth.block_number >= 20
        assert provider_of(w3).endpoint_uri == down_b.url


def test_it_never_shows_a_providers_key_from_its_url(
    anvil: Anvil, caplog: pytest.LogCaptureFixture
) -> None:
    # Given endpoints whose URLs carry keys, as hosted providers' do (path, query, credentials)
    with FlakyRpcProxy(anvil.rpc_url) as down:
        down.down = True
        port = free_port()
        urls = [
            f"{down.url}/v3/PATHKEY0123456789",
            f"http://user:PASSWORDKEY@127.0.0.1:{port}/?apikey=QUERYKEY987",
        ]
        w3 = connect(urls, timeout=CLIENT_TIMEOUT, retries=1, backoff=0.01)
        # When every one fails
        with caplog.at_level(logging.WARNING), pytest.raises(RpcUnavailable) as raised:
            w3.eth.get_block("latest")
    # Then the error and the log name each endpoint by scheme://host:port, and no key
    shown = str(raised.value) + caplog.text + str(w3.provider)
    assert f"{down.url}: HTTP 503" in shown and f"http://127.0.0.1:{port}: " in shown
    for key in ("PATHKEY0123456789", "PASSWORDKEY", "QUERYKEY987", "user:"):
        assert key not in shown, key


def test_it_returns_json_rpc_errors_instead_of_failing_over(anvil: Anvil) -> None:
    with (
        FlakyRpcProxy(anvil.rpc_url, max_log_range=5) as ranged,
        FlakyRpcProxy(anvil.rpc_url) as other,
    ):
        w3 = connect([ranged.url, other.url], timeout=CLIENT_TIMEOUT)
        with pytest.raises(Web3RPCError, match="query exceeds max block range 5") as raised:
            w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"})
        assert raised.value.rpc_response is not None
        assert raised.value.rpc_response["error"]["code"] == -32005
        assert w3.eth.get_logs({"fromBlock": 1, "toBlock": 5}) == []
        with pytest.raises(ContractLogicError):
            w3.eth.call({"from": ALICE, "data": REVERTING_INIT_CODE})
        with w3.batch_requests() as batch:
            batch.add(w3.eth.get_logs({"fromBlock": "0x0", "toBlock": "0x4"}))
            batch.add(w3.eth.get_block(2))
            logs, block = batch.execute()
        assert logs == [] and block["number"] == 2
        with pytest.raises(Web3RPCError, match="max block range"), w3.batch_requests() as batch:
            batch.add(w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"}))
            batch.add(w3.eth.get_block(2))
            batch.execute()
        assert ranged.methods["eth_getLogs"] == 4
        assert other.requests == 0
        assert rpc_stats(w3) == {"requests": ranged.requests, "failures": 0, "failovers": 0}
