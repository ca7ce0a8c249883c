"""Dramatiq actors: thin shells around generation.pipeline.

Actors receive token primary keys, never objects, and are safe to run twice. Each has an
explicit retry count and time limit; expected failures (``PipelineError``) end the token
FAILED at once, and anything else is retried, then recorded by ``record_failure``.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from generation import pipeline
from generation.models import Token

RENDER_QUEUE = "render"
IO_QUEUE = "io"


@dramatiq.actor(queue_name=IO_QUEUE, max_retries=3)
def record_failure(message_data: dict[str, Any], exception_data: dict[str, Any]) -> None:
    """Called once a stage has used up its retries."""
    token_pk = message_data["args"][0]
    actor = message_data["actor_name"]
    pipeline.mark_failed(
        token_pk,
        f"{actor} gave up after retries: {exception_data['type']}: {exception_data['message']}",
    )


@dramatiq.actor(
    queue_name=RENDER_QUEUE,
    max_retries=2,
    min_backoff=2_000,
    max_backoff=30_000,
    time_limit=30 * 60_000,
    on_failure=record_failure,
)
def render_token(token_pk: int) -> None:
    try:
        status = pipeline.run_render(token_pk)
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
    on_failure=record_failure,
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
    on_failure=record_failure,
)
def publish_token(token_pk: int) -> None:
    try:
        pipeline.run_publish(token_pk)
    except pipeline.PipelineError as exc:
        pipeline.mark_failed(token_pk, str(exc))
