"""Prometheus metrics, scraped from ``/metrics`` (and from a worker's own port) and parsed with
prometheus_client's parser, after real work: messages on the real broker, renders by the real
render actor on the reference models in a real Dramatiq worker, transactions sent to anvil and
left unmined, a listener that read the chain and then fell behind it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import httpx
import pytest
from django.conf import settings
from django.test import Client, override_settings
from dramatiq import Worker
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, free_port
from chain.deployment import CollectionSpec, deploy_collection
from chain.errors import TransactionTimeout
from chain.listener import Listener
from chain.models import Chain, ChainCursor
from chain.sender import SendPolicy, TxIntent, recover, send_transaction
from chain.tasks import publish_pending
from devtools.fleet import Fleet
from foundation import broker_contents
from generation.models import Token
from generation.stages import IO_QUEUE, RENDER_QUEUE
from generation.tasks import pin_token, render_token
from tests.conftest import database_url
from tests.test_pipeline import make_token

pytestmark = pytest.mark.django_db(transaction=True)
DEPLOYER, COMMITTER, PUBLISHER = ANVIL_ACCOUNTS[:3]
SENDER, BOB = ANVIL_ACCOUNTS[4], ANVIL_ACCOUNTS[3].address
TEST_QUEUE = "observability-test"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dramatiq.actor(queue_name=TEST_QUEUE, max_retries=0)
def always_fails() -> None:
    """A poison message: no retries, so its first failure dead-letters it."""
    raise RuntimeError("this message is poison")


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: Client | None = None, **headers: str) -> Samples:
    response = (client or Client()).get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


def value(samples: Samples, name: str, **labels: object) -> float:
    """The sample's value; 0 for a series that is not there (a counter never incremented)."""
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())), 0.0)


@pytest.fixture
def broker() -> Iterator[dramatiq.Broker]:
    """The real broker of this run's namespace, its queues emptied before and after each test
    (a test before this one may have left messages)."""
    broker = dramatiq.get_broker()
    for queue in (RENDER_QUEUE, IO_QUEUE, TEST_QUEUE):
        broker.flush(queue)
    yield broker
    for queue in (RENDER_QUEUE, IO_QUEUE, TEST_QUEUE):
        broker.flush(queue)


@pytest.fixture
def render_settings(settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings.RENDER_CACHE_DIR = tmp_path / "renders"
    settings.RENDER_DEVICE = "cpu"
    return settings


def run_worker(broker: dramatiq.Broker, queue: str, until, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    """A real Dramatiq worker in this process, on ``queue``, until ``until()`` holds."""
    worker = Worker(broker, queues={queue}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "the worker did not finish in time"
            time.sleep(0.2)
    finally:
        worker.stop()


def dead_in(queue: str) -> int:
    reader = broker_contents.contents(timeout=5)
    try:
        return reader.depths([queue])[queue]["dead"]
    finally:
        reader.close()


@pytest.mark.rabbitmq
def test_it_counts_the_messages_in_each_queue_as_the_broker_holds_them(
    broker: dramatiq.Broker,
) -> None:
    # Given three renders waiting, a publishing run scheduled for later, and a poison message
    # that a worker took and dead-lettered
    for pk in (10**9, 10**9 + 1, 10**9 + 2):
        render_token.send(pk)
    publish_pending.send_with_options(args=(10**9,), delay=600_000)
    always_fails.send()
    run_worker(
        broker,
        TEST_QUEUE,
        until=lambda: dead_in(TEST_QUEUE) == 1,
    )

    # When /metrics is scraped
    samples = scrape()

    # Then the depths are what was enqueued
    assert value(samples, "mint_queue_messages", queue="render", state="ready") == 3
    assert value(samples, "mint_queue_messages", queue="render", state="in_flight") == 0
    # which RabbitMQ cannot count (foundation/broker_contents.py): left out, not reported as 0
    in_flight = ("mint_queue_messages", frozenset({("queue", "render"), ("state", "in_flight")}))
    assert (in_flight in samples) == (settings.BROKER_KIND == "redis")
    assert value(samples, "mint_queue_messages", queue="io", state="delayed") == 1
    assert value(samples, "mint_queue_messages", queue="io", state="ready") == 0
    assert value(samples, "mint_queue_messages", queue=TEST_QUEUE, state="dead") == 1
    assert value(samples, "mint_source_up", source="broker") == 1
    # and the poison message's one try shows as a failed stage
    failed = {"queue": TEST_QUEUE, "actor": "always_fails", "outcome": "failed"}
    assert value(samples, "mint_stage_duration_seconds_count", **failed) == 1


def test_it_counts_renders_gate_verdicts_and_attempts_of_real_renders(
    broker: dramatiq.Broker, reference_models: Path, render_settings: object
) -> None:
    # Given a token the gate accepts at once and one it rejects every time (2 attempts)
    accepted = make_token(reference_models, threshold=-1.0, slug="metrics-pass", token_id=1)
    rejected = make_token(reference_models, threshold=1.0, slug="metrics-reject", token_id=1)
    before = scrape()
    done = {"queue": "render", "actor": "render_token", "outcome": "done"}

    # When a render worker takes both
    render_token.send(accepted.pk)
    render_token.send(rejected.pk)
    finished = (Token.Status.RENDERED, Token.Status.NEEDS_REVIEW)
    run_worker(
        broker,
        RENDER_QUEUE,
        until=lambda: (
            Token.objects.filter(status__in=finished).count() == 2
            and scrape_count(done) == value(before, "mint_stage_duration_seconds_count", **done) + 2
        ),
    )
    samples = scrape()

    # Then renders, verdicts and attempts are counted per collection
    assert value(samples, "mint_renders_total", collection="metrics-pass") == 1
    assert value(samples, "mint_renders_total", collection="metrics-reject") == 2
    assert value(samples, "mint_gate_checks_total", collection="metrics-pass", result="pass") == 1
    assert (
        value(samples, "mint_gate_checks_total", collection="metrics-reject", result="reject") == 2
    )
    assert value(samples, "mint_gate_checks_total", collection="metrics-reject", result="pass") == 0
    passed = {"collection": "metrics-pass", "outcome": "rendered"}
    assert value(samples, "mint_render_attempts_count", **passed) == 1
    assert value(samples, "mint_render_attempts_sum", **passed) == 1
    review = {"collection": "metrics-reject", "outcome": "needs_review"}
    assert value(samples, "mint_render_attempts_count", **review) == 1
    assert value(samples, "mint_render_attempts_sum", **review) == 2
    # the stage latency histogram has both messages
    assert (
        value(samples, "mint_stage_duration_seconds_count", **done)
        - value(before, "mint_stage_duration_seconds_count", **done)
        == 2
    )
    # the tokens per status, and the pin message the accepted token sent, waiting in io
    assert value(samples, "mint_tokens", status="RENDERED") == 1
    assert value(samples, "mint_tokens", status="NEEDS_REVIEW") == 1
    assert value(samples, "mint_token_transitions_total", status="NEEDS_REVIEW") >= 1
    assert value(samples, "mint_queue_messages", queue="io", state="ready") == 1


def scrape_count(labels: dict[str, str]) -> float:
    return value(scrape(), "mint_stage_duration_seconds_count", **labels)


def test_it_counts_transactions_that_are_not_final_until_they_are(anvil, w3: Web3) -> None:  # type: ignore[no-untyped-def]
    # Given a chain that mines only when told, and two transfers sent and left pending
    Chain.objects.create(chain_id=w3.eth.chain_id, rpc_urls=anvil.rpc_url)
    account = Account.from_key(SENDER.private_key)
    impatient = SendPolicy.from_settings(timeout=1.0, poll_interval=0.1, confirmations=1)
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        for amount in (1, 2):
            with pytest.raises(TransactionTimeout):
                send_transaction(w3, account, TxIntent(BOB, value=amount), policy=impatient)
        # When /metrics is scraped
        pending = scrape()
        # and again once they are mined and the wallet settled
        w3.provider.make_request("anvil_mine", [2])
        recover(w3, account, policy=impatient)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    settled = scrape()

    # Then the two showed as pending, and then none
    chain = str(w3.eth.chain_id)
    assert value(pending, "mint_pending_transactions", chain_id=chain, status="PENDING") == 2
    assert value(pending, "mint_pending_transactions", chain_id=chain, status="SIGNED") == 0
    assert value(pending, "mint_oldest_pending_transaction_age_seconds", chain_id=chain) > 0
    for status in ("SIGNED", "PENDING", "MINED"):
        assert (
            "mint_pending_transactions",
            frozenset({("chain_id", chain), ("status", status)}),
        ) in settled
        assert value(settled, "mint_pending_transactions", chain_id=chain, status=status) == 0
    assert not any(name == "mint_oldest_pending_transaction_age_seconds" for name, _ in settled)


@override_settings(METRICS_CHAIN_CACHE_SECONDS=0)
def test_it_reports_the_listener_lag_in_blocks_and_the_wallet_balances(w3: Web3) -> None:
    # Given a collection whose listener has read the chain up to its confirmed head
    collection = deploy_collection(w3, DEPLOYER.private_key, CollectionSpec(slug="lagging"))
    chain = Chain.objects.get(chain_id=collection.chain_id)
    Listener(w3, chain, on_confirmed=lambda collection, pks: None).poll()
    cursor = ChainCursor.objects.get(collection=collection).block_number
    # When the chain moves on 7 blocks without it
    w3.provider.make_request("anvil_mine", [7])
    samples = scrape()

    # Then the lag is the head minus the cursor: the chain's confirmations plus those 7
    labels = {"chain_id": collection.chain_id, "collection": "lagging"}
    head = w3.eth.block_number
    assert value(samples, "mint_chain_head_block", chain_id=collection.chain_id) == head
    assert value(samples, "mint_listener_cursor_block", **labels) == cursor
    assert value(samples, "mint_listener_lag_blocks", **labels) == head - cursor
    assert head - cursor == chain.confirmations + 7
    # and the wallets that pay for seed commits and publishing show their balances
    for role, account in (("seed_committer", COMMITTER), ("publisher", PUBLISHER)):
        shown = value(
            samples,
            "mint_wallet_balance_ether",
            chain_id=collection.chain_id,
            role=role,
            address=account.address,
        )
        assert shown == pytest.approx(w3.eth.get_balance(account.address) / 10**18)
        assert shown > 0
    assert value(samples, "mint_source_up", source=f"chain:{collection.chain_id}") == 1


def test_the_web_tier_watches_the_wallets_it_is_given_by_address_without_their_keys(
    w3: Web3,
) -> None:
    # Given a web tier that holds no committer or publisher key, only their addresses
    committer, publisher = Account.create(), Account.create()
    for ether, account in ((3, committer), (5, publisher)):
        w3.provider.make_request("anvil_setBalance", [account.address, hex(ether * 10**18)])
    deploy_collection(w3, DEPLOYER.private_key, CollectionSpec(slug="keyless"))
    with override_settings(
        METRICS_CHAIN_CACHE_SECONDS=0,
        SEED_COMMITTER_ADDRESS=committer.address.lower(),
        PUBLISHER_ADDRESS=publisher.address,
    ):
        samples = scrape()
    # Then the balances shown are those addresses', under their checksummed form
    for role, account in (("seed_committer", committer), ("publisher", publisher)):
        shown = value(
            samples, "mint_wallet_balance_ether", chain_id=31337, role=role, address=account.address
        )
        assert shown == {"seed_committer": 3, "publisher": 5}[role]


@override_settings(METRICS_CHAIN_CACHE_SECONDS=0, METRICS_RPC_TIMEOUT=1.0)
def test_it_still_answers_with_the_chain_unreachable_and_says_so() -> None:
    # Given a chain whose only RPC URL is a port nobody listens on
    Chain.objects.create(chain_id=5, rpc_urls=f"http://127.0.0.1:{free_port()}")
    samples = scrape()
    assert value(samples, "mint_source_up", source="chain:5") == 0
    assert value(samples, "mint_source_up", source="database") == 1
    assert value(samples, "mint_source_up", source="broker") == 1
    assert not any(name == "mint_chain_head_block" for name, _ in samples)


@override_settings(METRICS_TOKEN="s3cret-scrape-token")
def test_it_asks_for_the_metrics_token_when_one_is_set() -> None:
    refused = Client().get("/metrics")
    assert refused.status_code == 401
    assert b"METRICS_TOKEN" in refused.content
    assert Client().get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert scrape(Authorization="Bearer s3cret-scrape-token")


def test_it_serves_a_worker_hosts_metrics_from_all_its_worker_processes(
    broker: dramatiq.Broker, redis_url: str, tmp_path: Path
) -> None:
    # Given an io worker with two processes writing to one multiprocess directory, and
    # serving it on a port of its own
    port = free_port()
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mintsite.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "WORKER_METRICS_PORT": str(port),
    }
    argv = ["rundramatiq", "--processes", "2", "--threads", "1", "--queues", "io"]
    fleet = Fleet(env, tmp_path / "logs")
    worker = fleet.start("worker", [*argv, "--worker-shutdown-timeout", "5000"])
    try:
        # When it handles four pin messages (for tokens that do not exist: nothing to do)
        for pk in range(10**9, 10**9 + 4):
            pin_token.send(pk)
        done = {"queue": "io", "actor": "pin_token", "outcome": "done"}
        deadline = time.monotonic() + 120
        samples: Samples = {}
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                samples = parse(response.text)
            except httpx.HTTPError:
                pass  # the exposition server is not up yet
            if value(samples, "mint_stage_duration_seconds_count", **done) >= 4:
                break
            time.sleep(0.5)
    finally:
        fleet.stop()

    # Then the worker's port shows the four, added up over its processes
    assert value(samples, "mint_stage_duration_seconds_count", **done) == 4, fleet.log_tail()
    assert len(list(directory.glob("histogram_*.db"))) >= 1
