"""The soak: many mints through the whole pipeline while a worker is killed and the broker
restarts.

``run_soak`` starts a fresh anvil (a block every 0.5 s), a redis-server of its own with an
append-only file, on RabbitMQ (``BROKER_URL=amqp://...``: the settings' ``BROKER_KIND``) also a
RabbitMQ node of its own (a shared server is never restarted), the listener, two render workers
and an IO worker (``devtools.fleet``); deploys a collection rendering at the reference models'
smallest cost (16x16, one step); mints ``mints`` tokens; SIGKILLs a render worker once
``kill_at`` of them are rendered (and starts a replacement), restarts the broker once
``restart_at`` are (counting what it held: queued, delayed, in flight); and waits until every
token is FINAL, or nothing moved for ``stall_seconds``.
It reports what a collector would count: minted, published (the digest on-chain and the
token FINAL), lost (minted and not published), and the tokens pinned or published twice.

It needs a database of its own (the tests' or ``manage.py soak``'s throwaway one): the
collection, its wallets and its tokens are created there. ``soak_in_test_database`` is what
``manage.py soak`` runs: the reference models built if missing, a throwaway database (Django's
test database: ``test_<name>_<pid>`` on PostgreSQL, a file under var/ on SQLite) created and
dropped around ``run_soak``, so it never touches the stack's own.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db.models import Count
from eth_account import Account
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, free_port, start_anvil
from chain.contract import bind, call_per_token
from chain.deployment import CollectionSpec, deploy_collection
from devtools.fleet import Fleet, PersistentRedis, PrivateRabbitmq, stack_env
from devtools.preflight import throwaway_database
from generation.models import Token, TokenEvent
from mintsite.database_url import current_database_url

DEPLOYER, COLLECTOR = ANVIL_ACCOUNTS[0], ANVIL_ACCOUNTS[4]
PRICE = 10**15
PER_TX = 20
Status = Token.Status
PAST_RENDER = [Status.RENDERED, Status.PINNED, Status.PUBLISHING, Status.PUBLISHED, Status.FINAL]
BROKER_NAMES = {"redis": "Redis", "rabbitmq": "RabbitMQ"}


@dataclass
class SoakReport:
    minted: int = 0
    published: int = 0
    lost: int = 0
    failed: int = 0  # FAILED or NEEDS_REVIEW: not published, counted in lost too
    pinned_twice: int = 0
    published_twice: int = 0
    seconds: float = 0.0
    killed_while_rendering: int = 0  # tokens RENDERING when the worker was killed
    at_restart: dict[str, int] = field(default_factory=dict)  # broker contents before restart
    logs: Path | None = None
    broker: str = "redis"

    def lines(self) -> list[str]:
        return [
            f"minted {self.minted}",
            f"published {self.published}",
            f"lost {self.lost}",
            f"failed {self.failed}, pinned twice {self.pinned_twice}, "
            f"published twice {self.published_twice}",
            f"worker SIGKILLed with {self.killed_while_rendering} token(s) rendering; "
            f"{BROKER_NAMES[self.broker]} restarted holding {self.at_restart}",
            f"wall time {self.seconds:.0f} s; logs in {self.logs}",
        ]


def mint(w3: Web3, contract_address: str, count: int) -> None:
    """``count`` tokens minted by one collector, PER_TX per transaction, sent back to back."""
    contract = bind(w3, contract_address)
    account = Account.from_key(COLLECTOR.private_key)
    nonce = w3.eth.get_transaction_count(account.address, "pending")
    hashes = []
    for start in range(0, count, PER_TX):
        quantity = min(PER_TX, count - start)
        tx = contract.functions.mint(quantity).build_transaction(
            {"from": account.address, "value": PRICE * quantity, "nonce": nonce, "gas": 3_000_000}
        )
        hashes.append(w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction))
        nonce += 1
    for tx_hash in hashes:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise RuntimeError(f"mint transaction {tx_hash.hex()} reverted")


def run_soak(
    mints: int,
    *,
    workdir: Path | None = None,
    kill_at: float = 0.3,
    restart_at: float = 0.6,
    stall_seconds: float = 180.0,
    size: int = 16,
    steps: int = 1,
    broker_kind: str | None = None,
    say: Callable[[str], None] = print,
) -> SoakReport:
    started = time.monotonic()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="mint-soak-"))
    kind = broker_kind or settings.BROKER_KIND
    report = SoakReport(logs=workdir / "logs", broker=kind)
    redis_server = PersistentRedis(free_port(), workdir / "redis")
    redis_server.start()
    broker: PersistentRedis | PrivateRabbitmq = redis_server
    if kind == "rabbitmq":
        broker = PrivateRabbitmq(free_port(), workdir / "rabbitmq")
        try:
            broker.start()
        except BaseException:
            redis_server.stop()
            raise
    anvil = start_anvil(block_time=0.5)
    namespace = f"mint-soak-{os.getpid()}"
    fleet = Fleet(
        stack_env(
            database_url=current_database_url(),
            redis_url=redis_server.url,
            broker_url=broker.url,
            namespace=namespace,
            rpc_url=anvil.rpc_url,
            ipfs_dir=Path(settings.IPFS_STORE_DIR),
            render_cache_dir=workdir / "renders",
            RENDER_LEASE_SECONDS="20",
            RENDER_BATCH_SIZE="4",
            PUBLISH_BATCH_WAIT="5",  # publishing waits as a delayed message most of the time
        ),
        workdir / "logs",
    )
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        spec = CollectionSpec(
            slug=f"soak-{os.getpid()}",
            name="Soak",
            steps=steps,
            width=size,
            height=size,
            max_supply=mints,
            max_per_tx=PER_TX,
            price_wei=PRICE,
            confirmations=1,
        )
        collection = deploy_collection(w3, DEPLOYER.private_key, spec)
        fleet.start_listener()
        fleet.start_worker("render-1", "render", 4)
        fleet.start_worker("render-2", "render", 4)
        fleet.start_worker("io", "io", 4)
        say(
            f"soak: minting {mints} tokens on {collection.contract_address}, "
            f"queues on {BROKER_NAMES[kind]} ({broker.url})"
        )
        mint(w3, collection.contract_address, mints)
        tokens = Token.objects.filter(collection=collection)
        killed = restarted = False
        progress, moved_at = -1, time.monotonic()
        while True:
            fleet.check()
            counts = dict(tokens.values_list("status").annotate(n=Count("pk")))
            past = sum(counts.get(s, 0) for s in PAST_RENDER)
            final = counts.get(Status.FINAL, 0)
            if not killed and past >= kill_at * mints:
                # the worker whose render holds a token right now: killed mid-render
                rendering = tokens.filter(status=Status.RENDERING).exclude(render_lease_owner="")
                holders = [
                    fleet.holder_of(o)
                    for o in rendering.values_list("render_lease_owner", flat=True)
                ]
                victim = next((h for h in holders if h and h.startswith("render")), None)
                if victim is not None:
                    report.killed_while_rendering = holders.count(victim)
                    fleet.kill(victim)
                    fleet.start_worker("render-3", "render", 4)
                    killed = True
                    say(
                        f"soak: {victim} SIGKILLed while rendering {holders.count(victim)} "
                        f"token(s) ({past} rendered)"
                    )
            if killed and not restarted and past >= restart_at * mints:
                report.at_restart = broker.snapshot(namespace)
                down = time.monotonic()
                broker.restart(down_seconds=2.0)
                restarted = True
                say(
                    f"soak: {BROKER_NAMES[kind]} restarted ({past} rendered; away "
                    f"{time.monotonic() - down:.1f} s), it held {report.at_restart}"
                )
            if final + counts.get(Status.FAILED, 0) + counts.get(Status.NEEDS_REVIEW, 0) >= mints:
                break
            if (past, final) != progress:
                progress, moved_at = (past, final), time.monotonic()
            elif time.monotonic() - moved_at > stall_seconds:
                say(f"soak: nothing moved for {stall_seconds:.0f} s: {counts}")
                break
            time.sleep(1.0 if killed else 0.05)  # quick while looking for a render to kill
        time.sleep(1.5)  # the last publish transactions' confirmations
        _count(report, w3, collection, tokens)
    finally:
        fleet.stop()
        anvil.stop()
        broker.stop()
        redis_server.stop()
    report.seconds = time.monotonic() - started
    return report


def soak_in_test_database(
    mints: int,
    *,
    kill_at: float = 0.3,
    restart_at: float = 0.6,
    stall_seconds: float = 180.0,
    say: Callable[[str], None] = print,
) -> SoakReport:
    """``run_soak`` on a throwaway database and IPFS store, reference models built if missing."""
    from generation.reference_models import build_reference_models, manifest_matches

    if not manifest_matches(settings.REFERENCE_MODELS_DIR):
        build_reference_models(settings.REFERENCE_MODELS_DIR)
    # the soak's pins stay out of the stack's store (var/ipfs): the workers get the same dir
    settings.IPFS_STORE_DIR = Path(tempfile.mkdtemp(prefix="mint-soak-ipfs-"))
    with throwaway_database():
        return run_soak(
            mints, kill_at=kill_at, restart_at=restart_at, stall_seconds=stall_seconds, say=say
        )


def _count(report: SoakReport, w3: Web3, collection, tokens) -> None:
    """Published means on-chain: the contract's digest is the token's metadata sha256."""
    contract = bind(w3, collection.contract_address)
    report.minted = contract.functions.totalSupply().call()
    final = dict(tokens.filter(status=Status.FINAL).values_list("token_id", "metadata_sha256"))
    digests = call_per_token(w3, contract, "metadataDigestOf", list(range(1, report.minted + 1)))
    report.published = sum(
        1 for token_id, digest in digests.items() if final.get(token_id) == bytes(digest).hex()
    )
    report.lost = report.minted - report.published
    report.failed = tokens.filter(status__in=[Status.FAILED, Status.NEEDS_REVIEW]).count()
    events = TokenEvent.objects.filter(token__collection=collection)
    for status, attr in ((Status.PINNED, "pinned_twice"), (Status.PUBLISHED, "published_twice")):
        twice = events.filter(status=status).values("token").annotate(n=Count("pk")).filter(n__gt=1)
        setattr(report, attr, twice.count())
