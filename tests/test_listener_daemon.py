"""The listener as operators run it: a real ``manage.py listen_chain`` process, killed with
SIGKILL mid-backfill, started twice against one database, and fed by a flaky RPC endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from eth_account import Account
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, Anvil
from chain.contract import bind
from chain.deployment import CollectionSpec, deploy_collection
from chain.listener import Listener
from chain.models import Chain
from chain.rpc import connect, rpc_stats
from generation.models import Collection, Token
from tests.conftest import database_url
from tests.rpc_proxy import FlakyRpcProxy

pytestmark = pytest.mark.django_db(transaction=True)
REPO = Path(__file__).resolve().parent.parent
DEPLOYER, COLLECTOR = ANVIL_ACCOUNTS[0], ANVIL_ACCOUNTS[3]


@pytest.fixture
def collection(w3: Web3) -> Collection:
    collection = deploy_collection(
        w3, DEPLOYER.private_key, CollectionSpec(slug="daemon", confirmations=1)
    )
    return collection


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    name = f"mint-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{name}*"):
        client.delete(key)


def mint_many(w3: Web3, collection: Collection, transactions: int, quantity: int) -> None:
    contract = bind(w3, collection.contract_address)
    account = Account.from_key(COLLECTOR.private_key)
    nonce = w3.eth.get_transaction_count(account.address)
    price = contract.functions.price().call()
    for i in range(transactions):
        tx = contract.functions.mint(quantity).build_transaction(
            {"from": account.address, "value": price * quantity, "nonce": nonce + i, "gas": 500_000}
        )
        w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    w3.provider.make_request("anvil_mine", [2])


def start_listener(redis_url: str, namespace: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mintsite.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "DRAMATIQ_NAMESPACE": namespace,
        "CHAIN_POLL_INTERVAL": "0.2",
    }
    return subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "listen_chain"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def handed_over(redis_url: str, namespace: str) -> list[int]:
    """Every token pk in the seed-commit messages the listeners queued, repeats included."""
    client = redis.Redis.from_url(redis_url)
    pks: list[int] = []
    for raw in client.hvals(f"{namespace}:io.msgs"):
        message = json.loads(raw)
        assert message["actor_name"] == "commit_seeds"
        pks += message["args"][1]
    return pks


def wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_it_resumes_after_kill_9_with_no_gap_and_no_duplicate(
    w3: Web3, collection: Collection, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    # Given 80 mints over 40 blocks and a listener reading 2 blocks per range
    mint_many(w3, collection, transactions=40, quantity=2)
    Chain.objects.filter(chain_id=collection.chain_id).update(log_range=2)
    log = tmp_path / "listener.log"
    first = start_listener(redis_url, namespace, log)
    # When it is killed with SIGKILL in the middle of the backfill
    wait_for(lambda: Token.objects.count() >= 10)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = Token.objects.count()
    assert killed_at < 80, "the backfill finished before the kill; make it longer"
    # and started again
    second = start_listener(redis_url, namespace, log)
    try:
        wait_for(lambda: Token.objects.count() == 80)
        wait_for(
            lambda: (
                set(handed_over(redis_url, namespace))
                >= set(Token.objects.values_list("pk", flat=True))
            )
        )
    finally:
        second.terminate()
        second.wait(timeout=20)
    # Then every mint is recorded once, with its block, and every token is handed over
    contract = bind(w3, collection.contract_address)
    assert sorted(Token.objects.values_list("token_id", flat=True)) == list(range(1, 81))
    for token in Token.objects.all():
        block = contract.functions.mintBlockOf(token.token_id).call()
        assert token.mint_block_number == block
        assert token.mint_block_hash == w3.eth.get_block(block)["hash"].to_0x_hex()
    assert "listener stopped after" in log.read_text()


def test_it_lets_only_one_of_two_listeners_process_a_chain(
    w3: Web3, collection: Collection, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    # Given two listeners started against the same database
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    listeners = [start_listener(redis_url, namespace, log) for log in logs]
    try:
        mint_many(w3, collection, transactions=10, quantity=3)
        wait_for(lambda: Token.objects.count() == 30)
        time.sleep(1.0)
        texts = [log.read_text() for log in logs]
        # Then one leads, the other waits, and each token is handed over exactly once
        assert sorted("leading chain" in text for text in texts) == [False, True]
        assert sorted("standby for chain" in text for text in texts) == [False, True]
        pks = handed_over(redis_url, namespace)
        assert sorted(pks) == sorted(Token.objects.values_list("pk", flat=True))
        # When the leader stops, the standby takes over
        leader = listeners[0] if "leading chain" in texts[0] else listeners[1]
        leader.terminate()
        leader.wait(timeout=20)
        mint_many(w3, collection, transactions=1, quantity=1)
        wait_for(lambda: Token.objects.count() == 31, timeout=30)
    finally:
        for process in listeners:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=20)


def test_it_loses_nothing_behind_a_flaky_endpoint_that_limits_log_ranges(
    anvil: Anvil, w3: Web3, collection: Collection
) -> None:
    # Given an endpoint failing every 4th request and refusing log ranges over 3 blocks,
    # with a healthy one behind it
    mint_many(w3, collection, transactions=25, quantity=2)
    chain = Chain.objects.get(chain_id=collection.chain_id)
    with FlakyRpcProxy(anvil.rpc_url, fail_every=4, modes=("http500", "drop", "garbage"),
                       max_log_range=3) as flaky:  # fmt: skip
        client = connect([flaky.url, anvil.rpc_url], timeout=5, backoff=0.01)
        handed: list[int] = []
        listener = Listener(client, chain, on_confirmed=lambda c, pks: handed.extend(pks))
        # When the listener polls through it
        summary = listener.poll()
        # Then it has failed over and split ranges, and every mint is recorded once
        assert flaky.failures_injected >= 1
        assert rpc_stats(client)["failovers"] >= 1
    assert summary.mints == 50
    assert sorted(Token.objects.values_list("token_id", flat=True)) == list(range(1, 51))
    assert sorted(handed) == sorted(Token.objects.values_list("pk", flat=True))


def test_it_splits_a_refused_log_range(anvil: Anvil, w3: Web3, collection: Collection) -> None:
    mint_many(w3, collection, transactions=12, quantity=1)
    chain = Chain.objects.get(chain_id=collection.chain_id)
    with FlakyRpcProxy(anvil.rpc_url, max_log_range=4) as limited:
        listener = Listener(connect(limited.url), chain, on_confirmed=lambda c, pks: None)
        summary = listener.poll()
        refused = limited.methods["eth_getLogs"] - summary.ranges
    assert refused >= 1
    assert Token.objects.count() == 12


def test_it_grows_the_log_range_back_while_answers_stay_small(
    w3: Web3, collection: Collection
) -> None:
    # Given a listener whose range was cut down to one block, and 15 blocks to read
    mine_to = w3.eth.block_number + 15
    w3.provider.make_request("anvil_mine", [15])
    chain = Chain.objects.get(chain_id=collection.chain_id)
    listener = Listener(w3, chain, on_confirmed=lambda c, pks: None)
    listener.range = 1
    start = collection.deployment_block
    # When it polls, each small answer doubles the next range: 1, 2, 4, 8, ...
    summary = listener.poll()
    blocks = mine_to - chain.confirmations - start + 1
    expected_ranges = next(k for k in range(1, 64) if 2**k - 1 >= blocks)
    assert summary.ranges == expected_ranges


def test_it_rejects_logs_whose_block_hash_is_not_the_blocks_and_reads_again(
    anvil: Anvil, w3: Web3, collection: Collection
) -> None:
    # Given a node whose first log answer names blocks the chain does not have
    mint_many(w3, collection, transactions=3, quantity=1)
    chain = Chain.objects.get(chain_id=collection.chain_id)
    with FlakyRpcProxy(anvil.rpc_url) as lying:
        lying.lying_log_answers = 1
        listener = Listener(connect(lying.url), chain, on_confirmed=lambda c, pks: None)
        # When the listener polls twice
        first = listener.poll()
        second = listener.poll()
        assert lying.lies_told == 1
    # Then nothing from the lie was recorded, and the honest answer was, with the real hashes
    assert first.mints == 0
    assert second.mints == 3
    for token in Token.objects.all():
        assert (
            token.mint_block_hash == w3.eth.get_block(token.mint_block_number)["hash"].to_0x_hex()
        )
