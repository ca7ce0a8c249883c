"""Dramatiq actors of the generation side: thin shells around generation.pipeline and
generation.review, declared with the names, queues and options of the stage table
(generation/stages.py).

Actors receive token primary keys, never objects, and are safe to run twice. Expected failures
(``PipelineError``) end the token FAILED at once, and anything else is retried, then recorded by
``record_failure`` once the retries are used up (Dramatiq's ``on_retry_exhausted``; its
``on_failure`` callback would fire on every failed try, retried or not). A message that used up
its retries lands in the queue's dead-letter set (``<namespace>:<queue>.XQ`` in Redis, kept
``DRAMATIQ_DEAD_MESSAGE_TTL``).

Each actor hands over by name (``stages.hand_over``): nothing here imports the next stage's actor.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from generation import failures, pin_check, pipeline, review, stages
from generation.errors import PipelineError, RenderLeaseHeld, TraitsNotReady
from generation.models import Token
from generation.stages import APPROVE, IO_QUEUE, PIN, RENDER, RERENDER

QUOTA_WAIT_MS = 10_000


@dramatiq.actor(queue_name=IO_QUEUE, **stages.BOOKKEEPING)
def record_failure(message_data: dict[str, Any], retry_data: dict[str, Any]) -> None:
    """Called once a stage has used up its retries: the token ends FAILED, the reason naming
    the stage and the kind of error, the error itself logged (generation/failures.py)."""
    token_pk = message_data["args"][0]
    reason = failures.gave_up(message_data, retry_data["retries"])
    failures.log_detail(reason, message_data, token_pks=[token_pk])
    pipeline.mark_failed(token_pk, reason)


@dramatiq.actor(actor_name=RENDER.actor, queue_name=RENDER.queue, **RENDER.options)
def render_token(token_pk: int) -> None:
    try:
        status = pipeline.run_render(token_pk)
    except TraitsNotReady:
        # Quota mode, earlier seeds still coming: not a failure, so not a retry either.
        stages.send(RENDER, token_pk, delay_ms=QUOTA_WAIT_MS)
        return
    except RenderLeaseHeld as held:
        # A live run has it; come back when its lease lapses, in case that run's worker died.
        stages.send(RENDER, token_pk, delay_ms=lease_wait_ms(held))
        return
    except PipelineError as exc:
        pipeline.fail_pipeline(token_pk, exc)
        return
    hand_over(token_pk, status, RENDER.hands_over_to)


@dramatiq.actor(actor_name=PIN.actor, queue_name=PIN.queue, **PIN.options)
def pin_token(token_pk: int) -> None:
    try:
        status = pipeline.run_pin(token_pk)
    except PipelineError as exc:
        pipeline.fail_pipeline(token_pk, exc)
        return
    hand_over(token_pk, status, PIN.hands_over_to)


@dramatiq.actor(
    actor_name=pin_check.CHECK_PINS_ACTOR,
    queue_name=IO_QUEUE,
    max_retries=0,  # the next sweep checks again
    min_backoff=1_000,
    max_backoff=1_000,
    time_limit=30 * 60_000,
)
def check_pins(limit: int, cids: list[str] | None = None) -> None:
    """The pin check: the ``limit`` contents checked longest ago (the listener's sweep), or
    those of ``cids`` (the admin's action)."""
    pin_check.check_pins(limit=limit, cids=cids or ())


@dramatiq.actor(actor_name=APPROVE.actor, queue_name=APPROVE.queue, **APPROVE.options)
def approve_token(token_pk: int, approved_by: str, attempt: int) -> None:
    hand_over(token_pk, review.approve(token_pk, approved_by, attempt), APPROVE.hands_over_to)


@dramatiq.actor(actor_name=RERENDER.actor, queue_name=RERENDER.queue, **RERENDER.options)
def rerender_token(token_pk: int, requested_by: str, until: int) -> None:
    try:
        status = review.rerender(token_pk, requested_by, until)
    except RenderLeaseHeld as held:
        stages.send(RERENDER, token_pk, requested_by, until, delay_ms=lease_wait_ms(held))
        return
    except PipelineError as exc:
        pipeline.fail_pipeline(token_pk, exc)
        return
    hand_over(token_pk, status, RERENDER.hands_over_to)


def hand_over(token_pk: int, status: str | None, stage_result: str) -> None:
    """Send the next stage's message when this run reached ``stage_result``, or when it found
    nothing to do (``status`` None) on a token already there: the message is a redelivery, and
    the run that committed the result may have died before it sent the next stage's message (a
    worker killed between the two). The next stage takes only tokens at that status, so a
    second message is harmless."""
    if status is not None and status != stage_result:
        return
    following = stages.acting_on(stage_result)
    if status == stage_result and following is not None and following.target == "token":
        stages.send(following, token_pk)  # no need to read the row again
        return
    row = Token.objects.filter(pk=token_pk, status=stage_result).values("collection_id").first()
    if row is not None:
        stages.hand_over(token_pk, row["collection_id"], stage_result)


def lease_wait_ms(held: RenderLeaseHeld) -> int:
    """How long a delivery that stood down waits before looking again: the lease, and a beat."""
    return int(held.expires_in * 1000) + 1_000
