"""The faults the pipeline survives, each caused for real (docs/faults.md).

Real worker processes (``manage.py rundramatiq``) on the real broker, a real anvil, the listener
and the reference models: a render worker SIGKILLed mid-render, two renders of one token at
once, a worker's database connections terminated by PostgreSQL, and a poison message that ends
in the dead-letter set. The broker restarted under load: tests/test_soak.py. The tests marked
``rabbitmq`` run on RabbitMQ too (``make test-rabbitmq``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from dramatiq import Worker
from eth_account import Account
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, Anvil, start_anvil
from chain.contract import bind
from chain.deployment import CollectionSpec, deploy_collection
from chain.models import Chain, OutgoingTransaction
from devtools.fleet import Fleet, stack_env
from foundation import broker_contents
from generation import errors, pipeline, redrive
from generation.models import Collection, Token, TokenEvent
from generation.rendering import png_bytes
from generation.tasks import pin_token
from generation.traits import render_prompt
from ipfs.cid import compute_raw_cid
from tests.conftest import database_url

Status = Token.Status
DEPLOYER, COLLECTOR = ANVIL_ACCOUNTS[0], ANVIL_ACCOUNTS[3]
PRICE = 10**15
TIMEOUT = 240.0
SEED = "0x" + hashlib.sha256(b"a seed for the lease").hexdigest()


def wait_for(
    what: str, done: Callable[[], Any], timeout: float = TIMEOUT, fleet: Fleet | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = done()
        if value:
            return value
        if fleet is not None:
            fleet.check()
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {what}" + (f"\n{fleet.log_tail()}" if fleet else "")
    )


# --- every actor's options ---------------------------------------------------------------------

REQUIRED_OPTIONS = ("max_retries", "min_backoff", "max_backoff", "time_limit")


def test_every_actor_sets_its_retries_backoff_and_time_limit_itself() -> None:
    # what a worker loads: every app's tasks modules (django_dramatiq's autodiscovery)
    for app in apps.get_app_configs():
        for module in settings.DRAMATIQ_AUTODISCOVER_MODULES:
            if importlib.util.find_spec(f"{app.name}.{module}") is not None:
                importlib.import_module(f"{app.name}.{module}")
    broker = dramatiq.get_broker()
    # the project's own (django_dramatiq declares delete_old_tasks, which nothing here sends)
    names = {
        name
        for name in broker.get_declared_actors()
        if broker.get_actor(name).fn.__module__.split(".")[0] in {"generation", "chain", "mintsite"}
    }
    assert {"render_token", "pin_token", "publish_pending", "commit_seeds"} <= names
    relying_on_defaults = {
        name: [o for o in REQUIRED_OPTIONS if o not in broker.get_actor(name).options]
        for name in sorted(names)
    }
    assert {n: m for n, m in relying_on_defaults.items() if m} == {}
    # and the retries are few: a poison message reaches the dead-letter set within minutes
    assert {
        n: broker.get_actor(n).options["max_retries"]
        for n in names
        if broker.get_actor(n).options["max_retries"] > 8
    } == {}


# --- the render lease: two runs of one token at once -----------------------------------------


def slow_token(reference_models: Path, slug: str) -> Token:
    """A token whose render takes seconds (128x128, 30 steps), long enough to race."""
    collection = Collection.objects.create(
        slug=slug,
        name=slug,
        chain_id=31337,
        contract_address=f"0x{int(hashlib.sha256(slug.encode()).hexdigest(), 16) % 16**40:040x}",
        model_dir=str(reference_models / "diffusion"),
        clip_dir=str(reference_models / "clip"),
        prompt_template="an abstract painting, token {token_id}",
        style_prompt="an abstract painting",
        clip_threshold=-1.0,
        steps=30,
        width=128,
        height=128,
        max_attempts=1,
    )
    return Token.objects.create(
        collection=collection, token_id=1, owner="0x" + "11" * 20, mint_tx_hash="0x" + "01" * 32,
        mint_log_index=0, mint_block_number=1, mint_block_hash="0x" + "22" * 32,
        expected_seed=SEED, seed=SEED, status=Status.SEED_COMMITTED,
    )  # fmt: skip


@dataclass
class Run:
    """``run_render`` on a thread of its own (its own database connection, as a worker's)."""

    token_pk: int
    result: Any = None
    error: BaseException | None = None

    def start(self) -> threading.Thread:
        def target() -> None:
            try:
                self.result = pipeline.run_render(self.token_pk)
            except BaseException as exc:  # handed to the test
                self.error = exc
            finally:
                connection.close()

        thread = threading.Thread(target=target)
        thread.start()
        return thread


@pytest.fixture
def lease_settings(settings, tmp_path: Path) -> Any:  # type: ignore[no-untyped-def]
    settings.RENDER_CACHE_DIR = tmp_path / "renders"
    settings.RENDER_DEVICE = "cpu"
    settings.RENDER_BATCH_SIZE = 1
    return settings


@pytest.mark.django_db(transaction=True)
def test_a_second_run_stands_down_while_the_first_holds_the_lease(
    reference_models: Path, lease_settings: Any
) -> None:
    token = slow_token(reference_models, "lease-live")
    first = Run(token.pk)
    thread = first.start()
    # Given the first run rendering, when a second delivery of the message runs
    wait_for(
        "the first run's claim", lambda: Token.objects.get(pk=token.pk).status == Status.RENDERING
    )
    with pytest.raises(errors.RenderLeaseHeld) as held:
        pipeline.run_render(token.pk)
    # then it stands down, naming the holder and when its lease lapses; the first finishes
    assert held.value.expires_in > 0
    thread.join(timeout=TIMEOUT)
    assert first.error is None and first.result == Status.RENDERED
    statuses = list(TokenEvent.objects.filter(token=token).values_list("status", flat=True))
    assert statuses == [Status.RENDERING, Status.RENDERED]


@pytest.mark.django_db(transaction=True)
def test_a_lapsed_lease_is_taken_over_and_the_stale_run_writes_nothing(
    reference_models: Path, lease_settings: Any
) -> None:
    # Given a run whose lease (0.5 s) lapses in the middle of its render (seconds): its worker
    # is as good as dead to the others
    lease_settings.RENDER_LEASE_SECONDS = 0.5
    token = slow_token(reference_models, "lease-lapsed")
    stale = Run(token.pk)
    thread = stale.start()

    def lapsed() -> bool:
        row = Token.objects.get(pk=token.pk)
        assert row.status in (Status.SEED_COMMITTED, Status.RENDERING), "rendered before it lapsed"
        return row.status == Status.RENDERING and row.render_lease_expires < time_now()

    wait_for("the lease to lapse mid-render", lapsed)
    owner = Token.objects.get(pk=token.pk).render_lease_owner
    # When another delivery runs, it takes the token over and renders it
    assert pipeline.run_render(token.pk) == Status.RENDERED
    thread.join(timeout=TIMEOUT)
    # Then the stale run, finishing later, wrote nothing over the new owner's result
    assert stale.error is None and stale.result is None
    token.refresh_from_db()
    assert token.status == Status.RENDERED and token.render_lease_owner == ""
    events = list(TokenEvent.objects.filter(token=token).values_list("status", "detail"))
    assert [s for s, _ in events] == [Status.RENDERING, Status.RENDERING, Status.RENDERED]
    assert f"taken over from {owner}, whose lease lapsed" in events[1][1]


def time_now() -> Any:
    from django.utils import timezone

    return timezone.now()


# --- the stack: real workers, listener and chain ------------------------------------------------
# One per test, and the tests transactional: what a test writes (the admin's retry) must be
# committed for the workers to see it, and the flush after each test empties the database.


@dataclass
class Stack:
    w3: Web3
    anvil: Anvil
    fleet: Fleet
    faults: Collection  # renders slowly enough to be caught mid-render
    poison: Collection
    render_cache: Path
    minted: dict[str, int]


def mint(stack: Stack, collection: Collection) -> Token:
    """One token minted on ``collection``; returns its row once the listener recorded it."""
    contract = bind(stack.w3, collection.contract_address)
    account = Account.from_key(COLLECTOR.private_key)
    tx = contract.functions.mint(1).build_transaction(
        {"from": account.address, "value": PRICE,
         "nonce": stack.w3.eth.get_transaction_count(account.address, "pending")}
    )  # fmt: skip
    tx_hash = stack.w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    assert stack.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)["status"] == 1
    stack.minted[collection.slug] = token_id = stack.minted.get(collection.slug, 0) + 1
    return wait_for(
        f"{collection.slug} #{token_id} recorded",
        lambda: Token.objects.filter(collection=collection, token_id=token_id).first(),
        fleet=stack.fleet,
    )


def status_of(token: Token) -> str:
    return Token.objects.filter(pk=token.pk).values_list("status", flat=True).get()


@pytest.fixture
def stack(
    transactional_db: None,
    django_db_blocker: Any,
    redis_url: str,
    reference_models: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("faults")
    anvil = start_anvil(block_time=0.5)
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    render_cache = tmp / "renders"
    fleet = Fleet(
        stack_env(
            database_url=database_url(),
            redis_url=redis_url,
            broker_url=settings.BROKER_URL,  # RabbitMQ in make test-rabbitmq
            # the test process's own namespace: the admin's retry here reaches these workers
            namespace=settings.DRAMATIQ_NAMESPACE,
            rpc_url=anvil.rpc_url,
            ipfs_dir=Path(settings.IPFS_STORE_DIR),
            render_cache_dir=render_cache,
            RENDER_LEASE_SECONDS="8",
            RENDER_BATCH_SIZE="1",
            PUBLISH_BATCH_WAIT="0.5",
        ),
        tmp / "logs",
    )
    with django_db_blocker.unblock():
        faults = deploy_collection(
            w3, DEPLOYER.private_key,
            CollectionSpec(slug="faults", name="Faults", steps=20, width=128, height=128, price_wei=PRICE, confirmations=1),
        )  # fmt: skip
        poison = deploy_collection(
            w3, DEPLOYER.private_key,
            CollectionSpec(slug="poison", name="Poison", steps=1, price_wei=PRICE, confirmations=1),
        )  # fmt: skip
        fleet.start_listener()
        fleet.start_worker("io", "io", 2)
        fleet.start_worker("render-a", "render", 1)
        s = Stack(w3, anvil, fleet, faults, poison, render_cache, {})
        try:
            yield s
        finally:
            fleet.stop()
            anvil.stop()
            Collection.objects.filter(pk__in=[faults.pk, poison.pk]).delete()
            Chain.objects.filter(chain_id=faults.chain_id).delete()


def uninterrupted_cid(token: Token) -> str:
    """The image CID a render of the token's seed gives when nothing interrupts it, rendered
    here in the test process, with a render cache of its own."""
    collection = token.collection
    renderer, _ = pipeline.load_models(collection, "cpu")
    prompt = render_prompt(
        collection.prompt_template, {}, collection.rarity,
        token_id=token.token_id, collection=collection.name,
    )  # fmt: skip
    params = pipeline.render_params(collection, prompt)
    image = renderer.render(params, bytes.fromhex(token.seed.removeprefix("0x")), token.attempt)
    return compute_raw_cid(png_bytes(image))


# On RabbitMQ, the soak (tests/test_soak.py, marked rabbitmq) SIGKILLs a render worker mid-render
# too, which keeps `make test-rabbitmq` inside CI's time budget.
@pytest.mark.django_db(transaction=True)
def test_a_render_worker_killed_mid_render_leaves_one_image_pinned_and_published_once(
    stack: Stack, django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock():
        # Given a token rendering on render-a
        token = mint(stack, stack.faults)
        wait_for(
            "the render to start", lambda: status_of(token) == Status.RENDERING, fleet=stack.fleet
        )
        holder = stack.fleet.holder_of(Token.objects.get(pk=token.pk).render_lease_owner)
        assert holder == "render-a"
        # When render-a is SIGKILLed and another worker starts
        stack.fleet.kill("render-a")
        assert status_of(token) == Status.RENDERING  # killed mid-render, not after
        stack.fleet.start_worker("render-b", "render", 1)
        # Then the message comes back (heartbeat timeout), the lapsed lease is taken over
        wait_for("the token FINAL", lambda: status_of(token) == Status.FINAL, fleet=stack.fleet)
        token.refresh_from_db()
        events = list(TokenEvent.objects.filter(token=token).values_list("status", "detail"))
        statuses = [s for s, _ in events]
        assert any("taken over from" in d for s, d in events if s == Status.RENDERING), events
        assert (statuses.count(Status.RENDERED), statuses.count(Status.PINNED)) == (1, 1), events
        assert (statuses.count(Status.PUBLISHED), statuses.count(Status.FINAL)) == (1, 1), events
        publishes = OutgoingTransaction.objects.filter(
            purpose__startswith=f"publish {stack.faults.slug} "
        ).values_list("purpose", "nonce")
        assert (
            len({n for p, n in publishes if str(token.token_id) in p.split(" ")[-1].split(",")})
            == 1
        )
        # and the image is the one an uninterrupted render of the seed gives
        assert token.image_cid == uninterrupted_cid(token)
        digest = (
            bind(stack.w3, stack.faults.contract_address)
            .functions.metadataDigestOf(token.token_id)
            .call()
        )
        assert bytes(digest).hex() == token.metadata_sha256


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="terminating a worker's connection needs PostgreSQL (pg_terminate_backend)",
)
def test_a_worker_whose_database_connection_was_killed_reconnects_for_its_next_job(
    stack: Stack, django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock():
        # Given the workers connected (a first token through the whole pipeline)
        first = mint(stack, stack.faults)
        wait_for("a first token FINAL", lambda: status_of(first) == Status.FINAL, fleet=stack.fleet)
        # When PostgreSQL terminates every connection the workers hold
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name IN ('io', 'render-a')"
            )
            terminated = [row[0] for row in cursor.fetchall()]
        assert terminated and all(terminated)
        # Then the next jobs (seed commit, render, pin, publish) reconnect and succeed first time
        second = mint(stack, stack.faults)
        wait_for(
            "the next token FINAL", lambda: status_of(second) == Status.FINAL, fleet=stack.fleet
        )
        for name in ("io", "render-a"):
            log = stack.fleet.log(name)
            assert (
                "terminating connection" not in log and "server closed the connection" not in log
            ), stack.fleet.log_tail(name)


def dead_letters(queue: str) -> list[dict[str, Any]]:
    reader = broker_contents.contents(timeout=10)
    try:
        return reader.dead_messages(queue)
    finally:
        reader.close()


# --- retries with backoff, then the dead letters: the broker's own part, in this process ----------
# (the whole story with a real worker fleet, the token FAILED and retried from the admin, is the
# next test; this one is the part each broker does its own way, quick enough for both)

RETRIES_QUEUE = "faults-retries"
tries: list[float] = []


@dramatiq.actor(
    queue_name=RETRIES_QUEUE, max_retries=2, min_backoff=200, max_backoff=400, time_limit=10_000
)
def fails_every_time() -> None:
    tries.append(time.monotonic())
    raise RuntimeError("this message is poison")


@pytest.mark.rabbitmq
@pytest.mark.django_db(transaction=True)
def test_a_failing_message_is_retried_after_its_backoff_then_dead_lettered() -> None:
    broker = dramatiq.get_broker()
    broker.flush(RETRIES_QUEUE)
    tries.clear()
    # Given a message that fails every time, and a worker
    sent = fails_every_time.send()
    worker = Worker(broker, queues={RETRIES_QUEUE}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        # When it has been tried, then it ends among the queue's dead letters, once
        dead = wait_for(
            "the dead letter",
            lambda: [m for m in dead_letters(RETRIES_QUEUE) if m["message_id"] == sent.message_id],
            timeout=60,
        )
    finally:
        worker.stop()
        broker.flush(RETRIES_QUEUE)
    # after its first try and 2 retries, each sent again after a backoff (a delayed message)
    assert len(dead) == 1 and dead[0]["options"]["retries"] == 2
    assert len(tries) == 3
    assert all(later - earlier >= 0.1 for earlier, later in itertools.pairwise(tries)), tries


@pytest.mark.django_db(transaction=True)
def test_a_poison_message_is_dead_lettered_shown_in_the_admin_and_retried_once_fixed(
    stack: Stack, django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock():
        # Given the poison collection's render folder blocked by a file (a full or broken disk
        # would do the same): every try of its renders fails with an error Dramatiq retries
        blocked = stack.render_cache / stack.poison.slug
        blocked.parent.mkdir(parents=True, exist_ok=True)
        blocked.write_text("not a folder")
        token = mint(stack, stack.poison)
        wait_for("the token FAILED", lambda: status_of(token) == Status.FAILED, fleet=stack.fleet)
        token.refresh_from_db()
        assert token.failure_reason == (
            "the render gave up after 2 retries: an unexpected FileExistsError"
        )
        # the message sits in the render queue's dead letters, after 2 retries
        dead = [
            m
            for m in dead_letters("render")
            if m["actor_name"] == "render_token" and m["args"] == [token.pk]
        ]
        assert len(dead) == 1 and dead[0]["options"]["retries"] == 2
        # The admin shows the reason, on the list and on the token's page
        root = User.objects.create_superuser("faults-root", "root@example.com", None)
        client = Client()
        client.force_login(root)
        listing = client.get("/admin/generation/token/", {"status__exact": "FAILED"})
        page = client.get(f"/admin/generation/token/{token.pk}/change/")
        for response in (listing, page):
            assert response.status_code == 200
            assert "the render gave up after 2 retries" in response.content.decode()
        # When the cause is fixed and a manager retries it from the admin
        blocked.unlink()
        response = client.post(
            "/admin/generation/token/", {"action": "retry", "_selected_action": [token.pk]}
        )
        assert response.status_code == 302
        # Then the token goes through: rendered, pinned, published
        wait_for(
            "the retried token FINAL", lambda: status_of(token) == Status.FINAL, fleet=stack.fleet
        )
        User.objects.filter(pk=root.pk).delete()


# --- a stage's result committed, the next stage's message never sent ---------------------------
# A worker killed between its commit and its send (the soak caught render workers dying just
# there, with a batch of four committed at once) leaves the token at the stage's result, and the
# message it was processing comes back. The test takes the dead worker's place: it runs the
# stage in this process, as far as the commit, on a token whose message waits in the broker.


def finished_once(token: Token) -> None:
    statuses = list(TokenEvent.objects.filter(token=token).values_list("status", flat=True))
    for status in (Status.RENDERED, Status.PINNED, Status.PUBLISHED, Status.FINAL):
        assert statuses.count(status) == 1, statuses


def seed_committed_with_no_render_worker(stack: Stack) -> Token:
    """A token of the quick collection, seed committed, its render message waiting."""
    stack.fleet.kill("render-a")
    token = mint(stack, stack.poison)
    wait_for(
        "the seed commit", lambda: status_of(token) == Status.SEED_COMMITTED, fleet=stack.fleet
    )
    # the io worker commits the status before it sends the render: wait for the message too, or
    # a test that empties the queue next could run before it arrives
    wait_for(
        "the render message",
        lambda: token.pk in redrive.waiting_for_messages()[0],
        fleet=stack.fleet,
    )
    return token


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("died_after", [Status.RENDERED, Status.PINNED])
def test_a_redelivered_message_sends_the_next_stage_a_dead_worker_never_sent(
    stack: Stack, django_db_blocker: Any, settings: Any, died_after: str
) -> None:
    settings.RENDER_CACHE_DIR, settings.RENDER_DEVICE = stack.render_cache, "cpu"
    with django_db_blocker.unblock():
        token = seed_committed_with_no_render_worker(stack)
        # Given a worker that committed the stage's result and died before sending on
        assert pipeline.run_render(token.pk) == Status.RENDERED
        if died_after == Status.PINNED:
            assert pipeline.run_pin(token.pk) == Status.PINNED
            pin_token.send(token.pk)  # the dead io worker's message, redelivered
        # When its message is delivered again (render-b takes the waiting render message)
        stack.fleet.start_worker("render-b", "render", 1)
        # Then the token goes on to FINAL, each stage done once
        wait_for("the token FINAL", lambda: status_of(token) == Status.FINAL, 90, stack.fleet)
        finished_once(token)


@pytest.mark.django_db(transaction=True)
def test_a_token_whose_message_was_lost_is_sent_again_by_the_listeners_sweep(
    stack: Stack, django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock():
        token = seed_committed_with_no_render_worker(stack)
        # Given its render message lost (the render queue emptied, as a broker restarted
        # without its messages on disk would)
        dramatiq.get_broker().flush("render")
        time.sleep(1.5)  # untouched for longer than the sweep's age below
        # When a listener sweeping every second leads, and a render worker runs
        stack.fleet.kill("listener")
        stack.fleet.start_listener("listener-2", SWEEP_SECONDS="1")
        stack.fleet.start_worker("render-b", "render", 1)
        # Then the listener sends the render again and the token goes on to FINAL, once
        wait_for("the token FINAL", lambda: status_of(token) == Status.FINAL, 90, stack.fleet)
        finished_once(token)
        assert "sent again the messages of stuck tokens: render 1," in stack.fleet.log("listener-2")
