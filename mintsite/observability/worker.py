"""Dramatiq middleware: each message's log context and its stage duration.

Around every message a worker processes, the log context (:mod:`.logs`) holds the stage (the
actor's name), the message id and what the message is about: for an actor whose first
argument is ``token_pk`` the token's collection slug and on-chain id (looked up once per token
and remembered: they never change), for ``collection_pk`` the collection's slug. So every line
logged meanwhile, by whichever library, says which token and stage it is about. When the
message is done, its duration goes into ``mint_stage_duration_seconds`` and one line says how
it ended.

With ``WORKER_METRICS_PORT`` set, ``rundramatiq`` also runs :func:`serve_worker_metrics` as a
fork process: it serves the host's ``PROMETHEUS_MULTIPROC_DIR`` (where every worker process
writes its metrics) for Prometheus to scrape.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from contextvars import Token as ContextToken
from typing import Any

import dramatiq
from django.db import DatabaseError, close_old_connections

from foundation import logcontext
from mintsite.observability import metrics

log = logging.getLogger(__name__)


# pk -> (collection slug, on-chain token id); a token's never change. Bounded: cleared when
# full rather than evicting one by one (a cleared entry costs one indexed query).
_identities: dict[int, tuple[str, int]] = {}
_IDENTITIES_MAX = 100_000


def _token_identity(token_pk: int) -> tuple[str, int] | None:
    from generation.models import Token

    identity = _identities.get(token_pk)
    if identity is None:
        row = Token.objects.filter(pk=token_pk).values_list("collection__slug", "token_id").first()
        if row is None:
            return None  # not remembered: a row that appears later is found then
        if len(_identities) >= _IDENTITIES_MAX:
            _identities.clear()
        identity = _identities[token_pk] = (row[0], row[1])
    return identity


def _collection_slug(collection_pk: int) -> str | None:
    from generation.models import Collection

    return Collection.objects.filter(pk=collection_pk).values_list("slug", flat=True).first()


@functools.lru_cache(maxsize=256)
def _first_parameter(fn: Any) -> str | None:
    parameters = list(inspect.signature(fn).parameters)
    return parameters[0] if parameters else None


def message_context(broker: dramatiq.Broker, message: dramatiq.Message) -> dict[str, Any]:
    """The log context fields for ``message``: stage, message id, and its token or collection."""
    fields: dict[str, Any] = {"stage": message.actor_name, "message_id": message.message_id}
    try:
        first = _first_parameter(broker.get_actor(message.actor_name).fn)
    except dramatiq.errors.ActorNotFound:
        return fields
    arg = message.args[0] if message.args else None
    if not isinstance(arg, int):
        return fields
    try:
        if first == "token_pk":
            fields["token_pk"] = arg
            identity = _token_identity(arg)
            if identity is not None:
                fields["collection"], fields["token_id"] = identity
        elif first == "collection_pk":
            fields["collection"] = _collection_slug(arg)
    except DatabaseError as exc:
        # The context is a convenience: the actor itself meets the database trouble and
        # reports it; the line still has the stage and the primary key. A connection this
        # broke is closed, so the actor starts on a fresh one.
        log.debug("no log context for %s: %s", message, exc)
        close_old_connections()
    return fields


class Observability(dramatiq.Middleware):
    """Log context and stage durations for every message (one entry in
    ``DRAMATIQ_BROKER["MIDDLEWARE"]``; put it last so the time measured is the actor's)."""

    def __init__(self) -> None:
        # A worker thread handles one message at a time, and Dramatiq calls the before and
        # after hooks in that thread; keyed by thread, not message id, because a redelivered
        # message can run twice at once with the same id.
        self._local = threading.local()

    @property
    def forks(self) -> list[Any]:
        from django.conf import settings

        return [serve_worker_metrics] if settings.WORKER_METRICS_PORT else []

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        context = logcontext.bind(**message_context(broker, message))
        self._local.running = (message.message_id, time.perf_counter(), context)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.Message,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._finish(message, "done" if exception is None else "failed", exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        self._finish(message, "skipped", None)

    def _finish(
        self, message: dramatiq.Message, outcome: str, exception: BaseException | None
    ) -> None:
        running: tuple[str, float, ContextToken[Any]] | None = getattr(self._local, "running", None)
        if running is None or running[0] != message.message_id:
            return  # an earlier middleware skipped it before this one saw it start
        self._local.running = None
        _, started, context = running
        seconds = time.perf_counter() - started
        queue = message.queue_name.removesuffix(".DQ")
        metrics.STAGE_SECONDS.labels(queue, message.actor_name, outcome).observe(seconds)
        if exception is None:
            log.info("%s %s in %.3f s", message.actor_name, outcome, seconds)
        else:
            log.warning(
                "%s %s after %.3f s: %s: %s",
                message.actor_name, outcome, seconds, type(exception).__name__, exception,
            )  # fmt: skip
        logcontext.unbind(context)


def serve_worker_metrics() -> None:
    """Fork function: serve this host's worker metrics on ``WORKER_METRICS_HOST``:
    ``WORKER_METRICS_PORT`` until the worker stops."""
    from prometheus_client import start_http_server

    from foundation.env import env_int, env_str

    port = env_int("WORKER_METRICS_PORT", 0, minimum=0)
    host = env_str("WORKER_METRICS_HOST") or "127.0.0.1"
    if not metrics.multiprocess_dir():
        raise SystemExit(
            "WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR: the worker processes write "
            "their metrics there and this server adds them up (docs/observability.md)"
        )
    registry = metrics.CollectorRegistry(auto_describe=False)
    metrics.multiprocess.MultiProcessCollector(registry, path=metrics.multiprocess_dir())
    start_http_server(port, host, registry)
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    threading.Event().wait()  # the server thread serves; SIGTERM ends the fork process
