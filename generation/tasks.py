"""Dramatiq actors: thin shells around generation.pipeline.

Actors receive token primary keys, never objects, and are safe to run twice. Each has an
explicit retry count and time limit; expected failures (``PipelineError``) end the token
FAILED at once, and anything else is retried, then recorded by ``record_failure`` once the
retries are used up (Dramatiq's ``on_retry_exhausted``; its ``on_failure`` callback would fire
on every failed try, retried or not).
"""

from __future__ import annotations

from typing import Any

import dramatiq

from generation import pipeline
from generation.models import Token

RENDER_QUEUE = "render"
QUOTA_WAIT_MS = 10_000
IO_QUEUE = "io"


@dramatiq.actor(queue_name=IO_QUEUE, max_retries=3)
def record_failure(message_data: dict[str, Any], retry_data: dict[str, Any]) -> None:
    """Called once a stage has used up its retries: the token ends FAILED with the last error."""
    token_pk = message_data["args"][0]
    traceback = message_data.get("options", {}).get("traceback", "").strip()
    last_error = traceback.splitlines()[-1] if traceback else "no traceback recorded"
    pipeline.mark_failed(
        token_pk,
        f"{message_data['actor_name']} gave up after {retry_data['retries']} retries: {last_error}",
    )


@dramatiq.actor(
    queue_name=RENDER_QUEUE,
    max_retries=2,
    min_backoff=2_000,
    max_backoff=30_000,
    time_limit=30 * 60_000,
    on_retry_exhausted="record_failure",
)
def render_token(token_pk: int) -> None:
    try:
        status = pipeline.run_render(token_pk)
    except pipeline.TraitsNotReady:
        # Quota mode, earlier seeds still coming: not a failure, so not a retry either.
        render_token.send_with_options(args=(token_pk,), delay=QUOTA_WAIT_MS)
        return
    except pipeline.PipelineError as exc:
        pipeline.mark_failed(token_pk, str(exc))
        return
    if status == Token.Status.RENDERED:
        pin_token.send(token_pk)


@dramatiq.actor(
    queue_name=IO_QUEUE,
    max_retries=5,
    min_backoff=1_000,
    max_backoff=60_000,
    time_limit=5 * 60_000,
    on_retry_exhausted="record_failure",
)
def pin_token(token_pk: int) -> None:
    try:
        status = pipeline.run_pin(token_pk)
    except pipeline.PipelineError as exc:
        pipeline.mark_failed(token_pk, str(exc))
        return
    if status == Token.Status.PINNED:
        publish_token.send(token_pk)


@dramatiq.actor(
    queue_name=IO_QUEUE,
    max_retries=5,
    min_backoff=2_000,
    max_backoff=60_000,
    time_limit=10 * 60_000,
    on_retry_exhausted="record_failure",
)
def publish_token(token_pk: int) -> None:
    try:
        pipeline.run_publish(token_pk)
    except pipeline.PipelineError as exc:
        pipeline.mark_failed(token_pk, str(exc))
