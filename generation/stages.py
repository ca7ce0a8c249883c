"""The stage table: the one place that says which stage acts on which token status.

For each status a message moves on, the table names the stage that acts on it, its Dramatiq
actor (by name), queue and options preset, the status a success hands over to, and whether a
manager (admin) or an integrator (API) may send a FAILED token back to it. The pipeline's
handover, the admin's retry, the API's requeue, ``redrive``, the metrics' stage labels, the
status document and the mint page's progress all read it.

Stages are sent **by name**: a producer builds the ``dramatiq.Message`` that ``Actor.send``
would build (actor name, queue, arguments) and hands it to the broker, so no module imports the
actor it sends to (STYLE.md: producers never import consumers). The actors themselves live in
the ``tasks`` modules of the side that does the work (``chain/tasks.py``: seed commits and
publishing; ``generation/tasks.py``: render, pin and the manager's review), each declared with
the queue and options this table gives; tests/test_stages.py checks that every name here is a
declared actor on its queue.

Adding a stage touches the status enum (generation/models.py), this table, the stage's
function and actor, and its test.

::

    CONFIRMED --seed commit--> SEED_COMMITTED --render--> RENDERED --pin--> PINNED
              --publish--> PUBLISHED --(the listener, at the confirmation depth)--> FINAL
    NEEDS_REVIEW --approve | re-render (a manager)--> RENDERED
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import dramatiq
from django.conf import settings

from generation.models import Token

Message = dramatiq.Message[Any]

Status = Token.Status

RENDER_QUEUE = "render"  # GPU workers: the models are loaded there
IO_QUEUE = "io"  # chain, IPFS and bookkeeping
# Webhook deliveries, on their own worker: a slow receiver holds only webhook threads, never
# the seed commits, pins and publishes of the io queue. Not a stage (no token waits on it).
WEBHOOK_QUEUE = "webhooks"
# The sale's on-chain controls (sales/tasks.py), on the one worker that holds the sales key
# (SALES_ROLE). Not a stage either.
SALES_QUEUE = "sales"
PIPELINE_QUEUES = (RENDER_QUEUE, IO_QUEUE)  # the stages' (redrive looks here)
QUEUES = (*PIPELINE_QUEUES, WEBHOOK_QUEUE, SALES_QUEUE)  # every queue a worker serves

# Options presets (Dramatiq's defaults are 20 retries over up to 7 days and a 10-minute limit;
# every actor states its own). No pipeline stage has a ``max_age``: Dramatiq drops a message
# older than that unprocessed, and a token whose message waited out a long backlog would be lost.

# Bookkeeping (a failure recorded after the retries): one quick database write, retried a few
# times over about a minute (the database restarting), then dead-lettered.
BOOKKEEPING: Mapping[str, Any] = MappingProxyType(
    {"max_retries": 3, "min_backoff": 1_000, "max_backoff": 30_000, "time_limit": 60_000}
)
# Seed commits: one transaction for a few hundred tokens, retried through a flaky RPC.
SEED_COMMIT_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "max_retries": 8,
        "min_backoff": 1_000,
        "max_backoff": 60_000,
        "time_limit": 5 * 60_000,
        "on_retry_exhausted": "record_commit_failure",
    }
)
# A render, and a manager's re-render: minutes of GPU work, retried twice (a worker lost
# mid-render), then recorded FAILED by record_failure.
RENDER_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "max_retries": 2,
        "min_backoff": 2_000,
        "max_backoff": 30_000,
        "time_limit": 30 * 60_000,
        "on_retry_exhausted": "record_failure",
    }
)
# Two pins; a remote pin may wait (IPFS_RETRIES + 1) x IPFS_PIN_DEADLINE for its service.
PIN_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "max_retries": 5,
        "min_backoff": 1_000,
        "max_backoff": 60_000,
        "time_limit": 15 * 60_000,
        "on_retry_exhausted": "record_failure",
    }
)
# A batch per transaction until none is left; the tokens stay PINNED when it gives up.
PUBLISH_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "max_retries": 5,
        "min_backoff": 2_000,
        "max_backoff": 60_000,
        "time_limit": 10 * 60_000,
        "on_retry_exhausted": "record_publish_failure",
    }
)
# A manager's approval: loads the models at worst, renders nothing. An approval that waited a
# week is stale: dropped, the token stays in review to be decided anew. No on_retry_exhausted:
# a token whose approval keeps failing stays in NEEDS_REVIEW.
APPROVE_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "max_retries": 2,
        "min_backoff": 2_000,
        "max_backoff": 30_000,
        "time_limit": 10 * 60_000,
        "max_age": 7 * 86_400_000,
    }
)

Target = Literal["token", "tokens", "collection"]


@dataclass(frozen=True)
class Stage:
    """One stage of a token's life.

    ``target`` says what its message carries: ``token`` (the token's pk), ``tokens`` (the
    collection's pk and a list of token pks) or ``collection`` (the collection's pk: the stage
    takes whatever of the collection waits at ``acts_on``).
    """

    name: str  # what the admin, the API and the history call it
    acts_on: str  # the status a token waits at for this stage
    actor: str  # the Dramatiq actor's name
    queue: str
    options: Mapping[str, Any]
    hands_over_to: str  # the status a success leaves the token at
    retryable: bool  # may a FAILED token be sent back to it (admin retry, API requeue)
    target: Target = "token"

    def args(self, token_pk: int, collection_pk: int) -> tuple[Any, ...]:
        """The message's arguments for one token of one collection."""
        if self.target == "token":
            return (token_pk,)
        if self.target == "tokens":
            return (collection_pk, [token_pk])
        return (collection_pk,)


SEED_COMMIT = Stage(
    "seed commit",
    Status.CONFIRMED,
    "commit_seeds",
    IO_QUEUE,
    SEED_COMMIT_OPTIONS,
    Status.SEED_COMMITTED,
    retryable=True,
    target="tokens",
)
RENDER = Stage(
    "render",
    Status.SEED_COMMITTED,
    "render_token",
    RENDER_QUEUE,
    RENDER_OPTIONS,
    Status.RENDERED,
    retryable=True,
)
PIN = Stage(
    "pin", Status.RENDERED, "pin_token", IO_QUEUE, PIN_OPTIONS, Status.PINNED, retryable=True
)
PUBLISH = Stage(
    "publish",
    Status.PINNED,
    "publish_pending",
    IO_QUEUE,
    PUBLISH_OPTIONS,
    Status.PUBLISHED,
    retryable=True,
    target="collection",
)
# The pipeline, in order. PUBLISHED becomes FINAL in the listener (no message: it watches the
# publish transaction's confirmations), REORGED likewise.
PIPELINE: Sequence[Stage] = (SEED_COMMIT, RENDER, PIN, PUBLISH)

# A manager's ways out of NEEDS_REVIEW (generation/review.py); they hand over to RENDERED too.
APPROVE = Stage(
    "approve",
    Status.NEEDS_REVIEW,
    "approve_token",
    RENDER_QUEUE,
    APPROVE_OPTIONS,
    Status.RENDERED,
    retryable=False,
)
RERENDER = Stage(
    "re-render",
    Status.NEEDS_REVIEW,
    "rerender_token",
    RENDER_QUEUE,
    RENDER_OPTIONS,
    Status.RENDERED,
    retryable=False,
)
REVIEW: Sequence[Stage] = (APPROVE, RERENDER)
STAGES: Sequence[Stage] = (*PIPELINE, *REVIEW)

# The in-between statuses a stage holds a token at while it works (a claim), by stage.
WORKING = {Status.RENDERING: RENDER, Status.PUBLISHING: PUBLISH}
# The listener moves a PUBLISHED token to FINAL at the publish transaction's confirmation depth
# (and any token to REORGED when its mint is reorganised away): no message does.
LISTENER_MOVES = {Status.PUBLISHED: Status.FINAL}


def acting_on(status: str) -> Stage | None:
    """The pipeline stage that moves a token on from ``status`` (None: nothing does)."""
    for stage in PIPELINE:
        if stage.acts_on == status:
            return stage
    return None


# Where a token stays unless a person acts (a requeue, a manager's review): no stage, claim or
# daemon moves it on from there. FINAL, FAILED, NEEDS_REVIEW and REORGED today.
SETTLED: frozenset[str] = frozenset(
    status
    for status in Status.values
    if acting_on(status) is None and status not in WORKING and status not in LISTENER_MOVES
)


def named(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise KeyError(f"no stage named {name!r}; the stages are {[s.name for s in STAGES]}")


def token_actors() -> frozenset[str]:
    """The actors whose message names one token first (what ``redrive`` looks for)."""
    return frozenset(s.actor for s in STAGES if s.target == "token")


def send_by_name(
    actor: str, queue: str, args: Sequence[Any], *, delay_ms: int | None = None
) -> Message:
    """Enqueue a message for ``actor`` on ``queue``, exactly as ``Actor.send_with_options``
    would, without importing the actor (the process sending need not declare it)."""
    message: Message = dramatiq.Message(
        queue_name=queue, actor_name=actor, args=tuple(args), kwargs={}, options={}
    )
    return dramatiq.get_broker().enqueue(message, delay=delay_ms or None)


def send(stage: Stage, *args: Any, delay_ms: int | None = None) -> Message:
    """Send ``stage`` its message with ``args`` (see :meth:`Stage.args`)."""
    return send_by_name(stage.actor, stage.queue, args, delay_ms=delay_ms)


def send_for(token: Token, stage: Stage, *, delay_ms: int | None = None) -> Message:
    """Send ``stage`` the message that moves ``token`` on."""
    return send(stage, *stage.args(token.pk, token.collection_id), delay_ms=delay_ms)


def hand_over(token_pk: int, collection_pk: int, status: str) -> Message | None:
    """A stage committed ``status`` for the token: send the stage that acts on it, if any.

    A per-collection stage (publishing, one transaction for many tokens) is sent at once when a
    full batch waits (``PUBLISH_BATCH_SIZE``), else after ``PUBLISH_BATCH_WAIT`` so the tokens
    pinned meanwhile share its transaction. Many messages for one collection are harmless: each
    run takes what is there, if anything.
    """
    stage = acting_on(status)
    if stage is None:
        return None
    delay_ms = 0
    if stage.target == "collection":
        waiting = Token.objects.filter(collection_id=collection_pk, status=status).count()
        if waiting < settings.PUBLISH_BATCH_SIZE:
            delay_ms = int(settings.PUBLISH_BATCH_WAIT * 1000)
    return send(stage, *stage.args(token_pk, collection_pk), delay_ms=delay_ms)


def resume_point(token: Token) -> Stage:
    """The first pipeline stage whose result a FAILED token lacks: where a retry starts.

    A token with its metadata pinned failed publishing; one with a rendered image failed
    pinning; one whose seed is committed as derived failed rendering (the render goes on from
    ``token.attempt``: attempts already rejected are not redone); anything else failed the seed
    commit. (A committed seed that differs from the derived one is not retryable at all: the
    callers refuse it first.)
    """
    if token.metadata_cid and token.metadata_sha256:
        return PUBLISH
    if token.image_sha256:
        return PIN
    if token.seed and token.seed == token.expected_seed:
        return RENDER
    return SEED_COMMIT
