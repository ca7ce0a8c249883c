"""Dramatiq actors: thin shells around generation.pipeline.

Actors receive token primary keys, never objects, and are safe to run twice. Each has an
explicit retry count, backoff and time limit (tests/test_faults.py checks every
declared actor; Dramatiq's defaults are 20 retries over up to 7 days and a 10-minute limit);
expected failures (``PipelineError``) end the token FAILED at once, and anything else is
retried, then recorded by ``record_failure`` once the retries are used up (Dramatiq's
``on_retry_exhausted``; its ``on_failure`` callback would fire on every failed try, retried or
not). A message that used up its retries lands in the queue's dead-letter set
(``<namespace>:<queue>.XQ`` in Redis, kept ``DRAMATIQ_DEAD_MESSAGE_TTL``). No pipeline actor
has a ``max_age``: Dramatiq drops a message older than that unprocessed, and a token whose
message waited out a long backlog would be lost.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from django.conf import settings

from generation import pipeline, publishing
from generation.models import Token

RENDER_QUEUE = "render"
QUOTA_WAIT_MS = 10_000
IO_QUEUE = "io"
# The bookkeeping actors (a failure recorded after the retries): one quick database write,
# retried a few times over about a minute (the database restarting), then dead-lettered.
BOOKKEEPING = {
    "max_retries": 3,
    "min_backoff": 1_000,
    "max_backoff": 30_000,
    "time_limit": 60_000,
}


@dramatiq.actor(queue_name=IO_QUEUE, **BOOKKEEPING)
def record_failure(message_data: dict[str, Any], retry_data: dict[str, Any]) -> None:
    """Called once a stage has used up its retries: the token ends FAILED with the last error."""
    token_pk = message_data["args"][0]
    traceback = message_data.get("options", {}).get("traceback", "").strip()
    last_error = traceback.splitlines()[-1] if traceback else "no traceback recorded"
    pipeline.mark_failed(
        token_pk,
        f"{message_data['actor_name']} gave up after {retry_data['retries']} retries: {last_error}",
    )


# A render, and a manager's re-render (generation/review.py): minutes of GPU work, retried twice
# (a worker lost mid-render), then recorded FAILED by record_failure.
RENDER_STAGE = {
    "queue_name": RENDER_QUEUE,
    "max_retries": 2,
    "min_backoff": 2_000,
    "max_backoff": 30_000,
    "time_limit": 30 * 60_000,
    "on_retry_exhausted": "record_failure",
}


@dramatiq.actor(**RENDER_STAGE)
def render_token(token_pk: int) -> None:
    try:
        status = pipeline.run_render(token_pk)
    except pipeline.TraitsNotReady:
        # Quota mode, earlier seeds still coming: not a failure, so not a retry either.
        render_token.send_with_options(args=(token_pk,), delay=QUOTA_WAIT_MS)
        return
    except pipeline.RenderLeaseHeld as held:
        # A live run has it; come back when its lease lapses, in case that run's worker died.
        render_token.send_with_options(args=(token_pk,), delay=lease_wait_ms(held))
        return
    except pipeline.PipelineError as exc:
        pipeline.mark_failed(token_pk, str(exc))
        return
    if status == Token.Status.RENDERED or needs_handover(token_pk, status, Token.Status.RENDERED):
        pin_token.send(token_pk)


@dramatiq.actor(
    queue_name=IO_QUEUE,
    max_retries=5,
    min_backoff=1_000,
    max_backoff=60_000,
    # two pins; a remote pin may wait (IPFS_RETRIES + 1) x IPFS_PIN_DEADLINE for its service
    time_limit=15 * 60_000,
    on_retry_exhausted="record_failure",
)
def pin_token(token_pk: int) -> None:
    try:
        status = pipeline.run_pin(token_pk)
    except pipeline.PipelineError as exc:
        pipeline.mark_failed(token_pk, str(exc))
        return
    if status == Token.Status.PINNED or needs_handover(token_pk, status, Token.Status.PINNED):
        schedule_publish(Token.objects.get(pk=token_pk).collection_id)


def needs_handover(token_pk: int, status: str | None, stage_result: str) -> bool:
    """True when a run found nothing to do (``status`` None) on a token already at this stage's
    result: the message is a redelivery, and the run that committed the result may have died
    before it sent the next stage's message (a worker killed between the two), so the caller
    sends it again. The next stage takes only tokens at this status: a second message is
    harmless."""
    if status is not None:
        return False
    return Token.objects.filter(pk=token_pk, status=stage_result).exists()


def schedule_publish(collection_pk: int) -> None:
    """Publish now if a full batch is waiting, else once PUBLISH_BATCH_WAIT has passed."""
    full = publishing.pending_count(collection_pk) >= settings.PUBLISH_BATCH_SIZE
    delay = 0 if full else int(settings.PUBLISH_BATCH_WAIT * 1000)
    publish_pending.send_with_options(args=(collection_pk,), delay=delay)


def lease_wait_ms(held: pipeline.RenderLeaseHeld) -> int:
    """How long a delivery that stood down waits before looking again: the lease, and a beat."""
    return int(held.expires_in * 1000) + 1_000


@dramatiq.actor(queue_name=IO_QUEUE, **BOOKKEEPING)
def record_publish_failure(message_data: dict[str, Any], retry_data: dict[str, Any]) -> None:
    """``publish_pending`` used up its retries (the chain unreachable for minutes): the tokens
    stay PINNED, and the next pinned token or ``manage.py publish_pending`` tries again."""
    traceback = message_data.get("options", {}).get("traceback", "").strip()
    last_error = traceback.splitlines()[-1] if traceback else "no traceback recorded"
    Token.objects.filter(collection_id=message_data["args"][0], status=Token.Status.PINNED).update(
        failure_reason=f"publishing gave up for now: {last_error}"[:2000]
    )


@dramatiq.actor(
    queue_name=IO_QUEUE,
    max_retries=5,
    min_backoff=2_000,
    max_backoff=60_000,
    time_limit=10 * 60_000,
    on_retry_exhausted="record_publish_failure",
)
def publish_pending(collection_pk: int) -> None:
    """Publish the collection's pinned tokens, a batch per transaction, until none is left.

    Many messages for one collection are harmless: each claims what is there, if anything.
    """
    while True:
        try:
            summary = publishing.publish_batch(collection_pk)
        except publishing.PublishPaused:
            publish_pending.send_with_options(
                args=(collection_pk,), delay=int(settings.PUBLISH_PAUSE_RETRY * 1000)
            )
            return
        if not summary.published and not summary.failed:
            return


# The admin's approve and re-render actors live beside what they do; imported here so every
# worker declares them whether or not the admin is installed.
from generation import review  # noqa: E402, F401
