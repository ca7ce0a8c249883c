"""Prometheus metrics: what the processes count, and what ``/metrics`` reads at scrape time.

Two kinds, because the facts live in two places:

- Counted by the process where things happen (a render worker, mostly): stage durations
  (measured by the Dramatiq middleware in :mod:`.worker`), renders, CLIP gate passes and
  rejections, attempts per token and status transitions (from the committed token events,
  :func:`generation.events.subscribe`). Workers are separate processes: with
  ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus_client's multiprocess mode) every process of a
  host writes its values there, the web tier's ``/metrics`` adds up that directory, and a
  worker host without a web tier serves it on ``WORKER_METRICS_PORT``.
- Read at scrape time by the web tier (:class:`ScrapeCollector`): queue depths from the
  broker (Redis or RabbitMQ), tokens per status and pending transactions from the database
  (aggregate queries only), the chain head, wallet balances and listener lag from the RPC (short timeout,
  cached, so a slow node never hangs a scrape). Each source reports ``mint_source_up``.

docs/observability.md lists every metric with its labels and a PromQL example.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chain.rpc import redact_url, scrub
from foundation import broker_contents
from mintsite.errors import ChainReadError
from mintsite.observability.access import has_metrics_access

if TYPE_CHECKING:
    from generation.model_pool import PoolEvent

log = logging.getLogger(__name__)

# --- counted by the processes -------------------------------------------------------------
# Stages run from milliseconds (a webhook) to many minutes (a render on a slow GPU, a publish
# waiting for its confirmations).
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
STAGE_SECONDS = Histogram(
    "mint_stage_duration_seconds",
    "Time a worker spent on one message, per actor (stage) and outcome "
    "(done, failed: raised and goes to retry or dead letter, skipped: e.g. too old)",
    ["queue", "actor", "outcome"],
    buckets=STAGE_BUCKETS,
)
RENDERS = Counter(
    "mint_renders",
    "Images rendered and put through the CLIP gate (one per attempt); rate() is renders/s",
    ["collection"],
)
GATE_CHECKS = Counter(
    "mint_gate_checks",
    "CLIP gate verdicts on rendered images (result: pass or reject)",
    ["collection", "result"],
)
ATTEMPTS = Histogram(
    "mint_render_attempts",
    "Attempts a token took when it left rendering (outcome: rendered, or needs_review once "
    "the gate rejected all its attempts)",
    ["collection", "outcome"],
    buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20),
)
TRANSITIONS = Counter(
    "mint_token_transitions",
    "Tokens entering each status (from the committed token events)",
    ["status"],
)
MODEL_LOADS = Counter(
    "mint_model_loads",
    "Models a worker loaded into its warm pool (kind: renderer or clip); "
    "hit rate = hits / (hits + loads)",
    ["kind"],
)
MODEL_HITS = Counter(
    "mint_model_hits",
    "Requests for a model its worker already held in the warm pool (kind: renderer or clip)",
    ["kind"],
)
MODEL_EVICTIONS = Counter(
    "mint_model_evictions",
    "Models evicted from a worker's warm pool to stay within RENDER_MODEL_MEMORY_MB",
    ["kind"],
)
MODEL_BYTES = Gauge(
    "mint_model_pool_bytes",
    "Bytes of model weights and buffers a worker's warm pool holds (kind: renderer or clip)",
    ["kind"],
    multiprocess_mode="livesum",  # the live processes' pools, added up
)
_POOL_COUNTERS = {"load": MODEL_LOADS, "hit": MODEL_HITS, "evict": MODEL_EVICTIONS}


def count_pool_event(event: PoolEvent) -> None:
    """A :data:`generation.model_pool.POOL` subscriber (every process subscribes it at start,
    in ``MintsiteConfig.ready``): counts loads, hits and evictions, and the bytes held."""
    _POOL_COUNTERS[event.action].labels(event.kind).inc()
    MODEL_BYTES.labels(event.kind).set(event.held_bytes)


# The pipeline's event details (generation/pipeline.py, generation/review.py) say what the
# gate decided; an approval by a manager is a RENDERED event without a gate pass.
_GATE_PASSED = re.compile(r"\battempt (\d+) passed the CLIP gate")
_GATE_REJECTED = "rejected by the CLIP gate"


def count_events(events: Sequence[Any]) -> None:
    """A :func:`generation.events.subscribe` subscriber (every process subscribes it at start,
    in ``MintsiteConfig.ready``): counts renders, gate verdicts, attempts per token and status
    transitions from a committed batch of token events."""
    from generation.models import Token

    Status = Token.Status
    for event in events:
        TRANSITIONS.labels(event.status).inc()
    relevant = [
        event
        for event in events
        if event.status in (Status.RENDERED, Status.NEEDS_REVIEW)
        or (event.status == Status.RENDERING and _GATE_REJECTED in event.detail)
    ]
    if not relevant:
        return
    rows = {
        pk: (slug, attempt)
        for pk, slug, attempt in Token.objects.filter(
            pk__in={event.token_id for event in relevant}
        ).values_list("pk", "collection__slug", "attempt")
    }
    for event in relevant:
        slug, attempt = rows.get(event.token_id, ("", None))
        if event.status == Status.RENDERING:
            RENDERS.labels(slug).inc()
            GATE_CHECKS.labels(slug, "reject").inc()
        elif event.status == Status.RENDERED:
            passed = _GATE_PASSED.search(event.detail)
            if passed:
                RENDERS.labels(slug).inc()
                GATE_CHECKS.labels(slug, "pass").inc()
                ATTEMPTS.labels(slug, "rendered").observe(int(passed.group(1)) + 1)
        elif attempt is not None:  # NEEDS_REVIEW: its attempt counter is the attempts used
            ATTEMPTS.labels(slug, "needs_review").observe(attempt)


# --- read at scrape time --------------------------------------------------------------------
def broker_redis(timeout: float) -> tuple[Any, str]:
    """A Redis client for the broker's server (short socket timeouts) and the key namespace;
    ``ValueError`` when the configured broker is not Redis."""
    import redis

    if settings.BROKER_KIND != "redis":
        raise ValueError(f"the broker is {settings.BROKER_KIND}, not Redis")
    client = redis.Redis.from_url(
        settings.BROKER_URL,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
    )
    return client, settings.DRAMATIQ_NAMESPACE


def queue_names() -> list[str]:
    """The pipeline's queues (the stage table's), and those of any other actor this process
    declares (a test's own, say); the web tier never imports the actors to learn them."""
    import dramatiq

    from generation.stages import QUEUES

    declared = {actor.queue_name for actor in dramatiq.get_broker().actors.values()}
    return sorted(declared | set(QUEUES))


def queue_depths(client: Any, namespace: str, queues: Iterable[str]) -> dict[str, dict[str, int]]:
    """Messages per queue and state in a Redis broker (foundation/broker_contents.py)."""
    return broker_contents.redis_queue_depths(client, namespace, queues)


@dataclass(frozen=True)
class ChainReading:
    head: int
    balances: dict[str, int]  # address -> wei


def chain_targets() -> dict[int, list[str]]:
    """The chains this backend works on (its collections' and the listener's ``Chain`` rows)
    and their RPC URLs (settings.RPC_URL for a chain without a row, like chain.chains)."""
    from chain.models import Chain
    from chain.rpc import parse_rpc_urls
    from generation.models import Collection

    rows = {chain.chain_id: chain.urls() for chain in Chain.objects.all()}
    ids = set(rows) | set(Collection.objects.values_list("chain_id", flat=True).distinct())
    return {chain_id: rows.get(chain_id) or parse_rpc_urls(settings.RPC_URL) for chain_id in ids}


def wallet_addresses(chain_id: int) -> dict[str, str]:
    """role -> address of the seed committer and the publisher: ``<ROLE>_ADDRESS`` where set
    (the web tier, which holds no key), else the address of the role's key on ``chain_id``;
    roles with neither are skipped."""
    from django.core.exceptions import ImproperlyConfigured
    from web3 import Web3

    from chain import wallets
    from chain.errors import MissingKey

    addresses = {}
    for role, account_for in (
        ("seed_committer", wallets.seed_committer),
        ("publisher", wallets.publisher),
    ):
        configured = getattr(settings, f"{role.upper()}_ADDRESS", None)
        if configured:
            if not Web3.is_address(configured):
                raise ImproperlyConfigured(
                    f"{role.upper()}_ADDRESS={configured!r} is not an Ethereum address"
                )
            addresses[role] = Web3.to_checksum_address(configured)
            continue
        try:
            addresses[role] = account_for(chain_id).address
        except (MissingKey, ImproperlyConfigured):
            continue  # not configured for this chain: nothing to watch
    return addresses


def rpc_batch(urls: Sequence[str], calls: list[tuple[str, list[Any]]], timeout: float) -> list[Any]:
    """One JSON-RPC batch to the first URL that answers within ``timeout``; the results in
    order. ``ChainReadError`` names every URL's failure."""
    payload = [
        {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
        for i, (method, params) in enumerate(calls)
    ]
    errors = []
    for url in urls:
        try:
            response = httpx.post(url, json=payload, timeout=timeout)
            response.raise_for_status()
            answers = response.json()
            if not isinstance(answers, list):
                raise ChainReadError(f"not a batch answer: {str(answers)[:200]}")
            by_id = {answer.get("id"): answer for answer in answers}
            results = []
            for i in range(len(calls)):
                answer = by_id.get(i, {})
                if "result" not in answer:
                    raise ChainReadError(f"{calls[i][0]}: {answer.get('error', 'no answer')}")
                results.append(answer["result"])
            return results
        except (httpx.HTTPError, ValueError, ChainReadError) as exc:
            # scheme://host only: a provider's key rides in its URL (this reaches /readyz)
            errors.append(f"{redact_url(url)}: {scrub(f'{type(exc).__name__}: {exc}', urls)}")
    raise ChainReadError("; ".join(errors) or "no RPC URL configured")


class _ChainCache:
    """Each chain's last reading (or failure), kept ``METRICS_CHAIN_CACHE_SECONDS``: a scrape
    every few seconds costs the node one batch per chain per period, and a node that hangs
    costs one timeout per period, not one per scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[Any, ...], tuple[float, ChainReading | ChainReadError]] = {}

    def read(
        self, chain_id: int, urls: list[str], addresses: dict[str, str]
    ) -> ChainReading | ChainReadError:
        key = (chain_id, tuple(urls), tuple(sorted(addresses.values())))
        ttl = settings.METRICS_CHAIN_CACHE_SECONDS
        with self._lock:  # one reader at a time: concurrent scrapes wait for its answer
            cached = self._entries.get(key)
            if cached is not None and time.monotonic() - cached[0] < ttl:
                return cached[1]
            reading: ChainReading | ChainReadError
            wanted = sorted(set(addresses.values()))
            try:
                head, *balances = rpc_batch(
                    urls,
                    [("eth_blockNumber", [])]
                    + [("eth_getBalance", [address, "latest"]) for address in wanted],
                    settings.METRICS_RPC_TIMEOUT,
                )
                reading = ChainReading(
                    int(head, 16), {a: int(b, 16) for a, b in zip(wanted, balances, strict=True)}
                )
            except (ChainReadError, ValueError, TypeError) as exc:
                reading = exc if isinstance(exc, ChainReadError) else ChainReadError(str(exc))
                log.warning("metrics: chain %d not read: %s", chain_id, reading)
            self._entries[key] = (time.monotonic(), reading)
            return reading


chain_cache = _ChainCache()


class ScrapeCollector(Collector):
    """The gauges read when ``/metrics`` is scraped. A source that fails (the database, the
    broker, a chain's RPC) reports ``mint_source_up 0`` and its gauges are left out; the rest
    of the scrape still answers."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "mint_source_up",
            "Whether /metrics could read a source (1) or not (0)",
            labels=["source"],
        )
        for source, read in (
            ("database", self._database),
            ("broker", self._broker),
        ):
            try:
                families = list(read())
            except Exception as exc:  # a scrape must answer even with a source down
                log.warning("metrics: %s not read: %s: %s", source, type(exc).__name__, exc)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        try:
            yield from self._chains(up)
        except Exception as exc:  # the database half of it (chains, cursors) failed
            log.warning("metrics: chains not read: %s: %s", type(exc).__name__, exc)
        yield up

    def _database(self) -> Iterator[Metric]:
        from django.db.models import Count, Min

        from chain.models import OutgoingTransaction
        from generation.models import Token

        tokens = GaugeMetricFamily("mint_tokens", "Tokens per status", labels=["status"])
        counts = dict(
            # grouped on the indexed status column alone, so the table itself is not read
            Token.objects.order_by().values_list("status").annotate(n=Count("status"))
        )
        for status in Token.Status.values:
            tokens.add_metric([status], counts.get(status, 0))
        yield tokens

        pending = GaugeMetricFamily(
            "mint_pending_transactions",
            "Transactions signed by this backend and not yet final (SIGNED: not yet accepted "
            "by a node, PENDING: not mined, MINED: waiting for confirmations)",
            labels=["chain_id", "status"],
        )
        oldest = GaugeMetricFamily(
            "mint_oldest_pending_transaction_age_seconds",
            "Age of the oldest transaction not yet final, per chain",
            labels=["chain_id"],
        )
        live = [
            OutgoingTransaction.Status.SIGNED,
            OutgoingTransaction.Status.PENDING,
            OutgoingTransaction.Status.MINED,
        ]
        rows = (
            OutgoingTransaction.objects.filter(status__in=live)
            .order_by()
            .values("chain_id", "status")
            .annotate(n=Count("pk"), oldest=Min("created_at"))
        )
        now = time.time()
        oldest_per_chain: dict[int, float] = {}
        seen: set[int] = set()
        for row in rows:
            pending.add_metric([str(row["chain_id"]), row["status"]], row["n"])
            seen.add(row["chain_id"])
            age = now - row["oldest"].timestamp()
            oldest_per_chain[row["chain_id"]] = max(age, oldest_per_chain.get(row["chain_id"], 0))
        for chain_id in sorted(set(chain_targets()) - seen):
            for status in live:  # a zero, not a missing series, once everything is final
                pending.add_metric([str(chain_id), status], 0)
        for chain_id, age in oldest_per_chain.items():
            oldest.add_metric([str(chain_id)], age)
        yield pending
        yield oldest
        yield from self._pins()
        yield from self._sale_actions()

    def _sale_actions(self) -> Iterator[Metric]:
        """The admin's sale controls (sales.SaleAction) per state, and how long the oldest one
        not yet sent has waited: with no sales worker running they wait for ever."""
        from django.db.models import Count, Min

        from sales.models import SaleAction

        states = GaugeMetricFamily(
            "mint_sale_actions",
            "Sale controls asked for in the admin, per state (queued, sending, done, failed)",
            labels=["state"],
        )
        counts = dict(SaleAction.objects.order_by().values_list("state").annotate(n=Count("pk")))
        for state in SaleAction.State.values:
            states.add_metric([state], counts.get(state, 0))
        yield states
        waiting = SaleAction.objects.filter(
            state__in=[SaleAction.State.QUEUED, SaleAction.State.SENDING]
        ).aggregate(oldest=Min("created_at"))["oldest"]
        oldest = GaugeMetricFamily(
            "mint_oldest_unsent_sale_action_age_seconds",
            "Age of the oldest sale control queued or being sent (0 when there is none)",
        )
        oldest.add_metric([], time.time() - waiting.timestamp() if waiting else 0.0)
        yield oldest

    def _pins(self) -> Iterator[Metric]:
        """Each configured IPFS target's copies as the pin ledger last saw them, and the CIDs
        held by fewer than the quorum (generation/pin_check.py re-pins those)."""
        from django.db.models import Count, Q

        from generation.models import Pin, PinnedContent

        names = list(settings.IPFS_TARGETS or [settings.IPFS_BACKEND])
        quorum = settings.IPFS_PIN_QUORUM or len(names)
        family = GaugeMetricFamily(
            "mint_ipfs_pins",
            "Pinned CIDs per IPFS target as the pin ledger last saw them: PINNED, MISSING (a "
            "failed pin, or lost since; the pin check pins it again), UNCHECKED (no answer "
            "recorded yet, such as on a target just added)",
            labels=["target", "state"],
        )
        counts = {
            (target, state): n
            for target, state, n in Pin.objects.filter(target__in=names)
            .order_by()
            .values_list("target", "state")
            .annotate(n=Count("pk"))
        }
        total = PinnedContent.objects.count()
        for name in names:
            recorded = 0
            for state in Pin.State.values:
                recorded += counts.get((name, state), 0)
                family.add_metric([name, state], counts.get((name, state), 0))
            family.add_metric([name, "UNCHECKED"], max(total - recorded, 0))
        yield family
        held = Count("pins", filter=Q(pins__state=Pin.State.PINNED, pins__target__in=names))
        below = GaugeMetricFamily(
            "mint_ipfs_cids_below_quorum",
            "Pinned CIDs held by fewer than IPFS_PIN_QUORUM of the IPFS targets, as last seen",
        )
        below.add_metric(
            [], PinnedContent.objects.annotate(held=held).filter(held__lt=quorum).count()
        )
        yield below

    def _broker(self) -> Iterator[Metric]:
        reader = broker_contents.contents(settings.METRICS_RPC_TIMEOUT)
        try:
            depths = reader.depths(queue_names())
        finally:
            reader.close()
        family = GaugeMetricFamily(
            "mint_queue_messages",
            "Messages in the broker per queue and state (ready: waiting for a worker; "
            "in_flight: taken by a worker, not yet acknowledged (Redis only); delayed: retries "
            "and scheduled sends (on RabbitMQ only those no worker holds yet); dead: "
            "dead-lettered)",
            labels=["queue", "state"],
        )
        for queue, states in depths.items():
            for state, value in states.items():
                family.add_metric([queue, state], value)
        yield family

    def _chains(self, up: GaugeMetricFamily) -> Iterator[Metric]:
        from chain.models import ChainCursor

        head = GaugeMetricFamily(
            "mint_chain_head_block", "The chain's latest block", labels=["chain_id"]
        )
        cursor_family = GaugeMetricFamily(
            "mint_listener_cursor_block",
            "The last block the listener has processed for a collection",
            labels=["chain_id", "collection"],
        )
        lag = GaugeMetricFamily(
            "mint_listener_lag_blocks",
            "Chain head minus the listener's cursor (at rest about the chain's confirmations)",
            labels=["chain_id", "collection"],
        )
        balance = GaugeMetricFamily(
            "mint_wallet_balance_ether",
            "Balance of the wallets that pay for seed commits and publishing",
            labels=["chain_id", "role", "address"],
        )
        cursors = list(
            ChainCursor.objects.values_list(
                "collection__chain_id", "collection__slug", "block_number"
            )
        )
        for chain_id, slug, block in cursors:
            cursor_family.add_metric([str(chain_id), slug], block)
        for chain_id, urls in sorted(chain_targets().items()):
            addresses = wallet_addresses(chain_id)
            reading = chain_cache.read(chain_id, urls, addresses)
            up.add_metric([f"chain:{chain_id}"], 0 if isinstance(reading, ChainReadError) else 1)
            if isinstance(reading, ChainReadError):
                continue
            head.add_metric([str(chain_id)], reading.head)
            for role, address in addresses.items():
                balance.add_metric([str(chain_id), role, address], reading.balances[address] / 1e18)
            for cursor_chain, slug, block in cursors:
                if cursor_chain == chain_id:
                    lag.add_metric([str(chain_id), slug], reading.head - block)
        yield from (head, cursor_family, lag, balance)


class _ThisProcess(Collector):
    """This process's own metrics (no multiprocess directory: one process, e.g. runserver)."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(*, scrape: bool) -> bytes:
    """The text exposition: every process of this host (multiprocess mode) or this process
    alone, plus the scrape-time gauges when ``scrape``."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory:
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_ThisProcess())
    if scrape:
        registry.register(ScrapeCollector())
    return generate_latest(registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: Prometheus text format. With ``METRICS_TOKEN`` set (always in
    production), only for ``Authorization: Bearer <token>`` (:mod:`.access`)."""
    if not has_metrics_access(request):
        return HttpResponse(
            "metrics need Authorization: Bearer <METRICS_TOKEN>\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return HttpResponse(exposition(scrape=True), content_type=CONTENT_TYPE_LATEST)
