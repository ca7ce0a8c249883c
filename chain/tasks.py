"""Dramatiq actors of the chain side: seed commits and publishing (thin shells over
chain/seed_commit.py and chain/publishing.py), declared with the names, queues and options of
the stage table (generation/stages.py). They hand over by name: nothing here imports the render
actor."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from django.conf import settings

from chain import publishing
from chain.chains import web3_for
from chain.errors import PublishPaused, WalletCannotPay
from chain.seed_commit import commit_seeds as commit_and_check
from generation import pipeline, stages
from generation.models import Collection, Token
from generation.pipeline import failure_reason, last_error
from generation.stages import IO_QUEUE, PUBLISH, SEED_COMMIT

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name=IO_QUEUE, **stages.BOOKKEEPING)
def record_commit_failure(message_data: dict[str, Any], retry_data: dict[str, Any]) -> None:
    reason = failure_reason(SEED_COMMIT.actor, message_data, retry_data["retries"])
    for token_pk in message_data["args"][1]:
        pipeline.mark_failed(token_pk, reason)


@dramatiq.actor(actor_name=SEED_COMMIT.actor, queue_name=SEED_COMMIT.queue, **SEED_COMMIT.options)
def commit_seeds(collection_pk: int, token_pks: list[int]) -> None:
    collection = Collection.objects.filter(pk=collection_pk).first()
    if collection is None:
        return

    def render(token: Token) -> None:
        stages.hand_over(token.pk, collection_pk, SEED_COMMIT.hands_over_to)

    try:
        commit_and_check(web3_for(collection.chain_id), collection, token_pks, on_committed=render)
    except WalletCannotPay as exc:
        # Not a failure of these tokens: the committer needs funds. They stay CONFIRMED, the
        # reason is on them, and this message comes back until the wallet can pay.
        log.error("seed commits paused for %s: %s", collection.slug, exc)
        Token.objects.filter(pk__in=token_pks, status=Token.Status.CONFIRMED).update(
            failure_reason=f"waiting for the seed commit: {exc}"[:2000]
        )
        stages.send(
            SEED_COMMIT,
            collection_pk,
            token_pks,
            delay_ms=int(settings.PUBLISH_PAUSE_RETRY * 1000),
        )


@dramatiq.actor(queue_name=IO_QUEUE, **stages.BOOKKEEPING)
def record_publish_failure(message_data: dict[str, Any], retry_data: dict[str, Any]) -> None:
    """``publish_pending`` used up its retries (the chain unreachable for minutes): the tokens
    stay PINNED, and the next pinned token or the sweep (``manage.py redrive``) tries again."""
    Token.objects.filter(collection_id=message_data["args"][0], status=Token.Status.PINNED).update(
        failure_reason=f"publishing gave up for now: {last_error(message_data)}"[:2000]
    )


@dramatiq.actor(actor_name=PUBLISH.actor, queue_name=PUBLISH.queue, **PUBLISH.options)
def publish_pending(collection_pk: int) -> None:
    """Publish the collection's pinned tokens, a batch per transaction, until none is left.

    Many messages for one collection are harmless: each claims what is there, if anything.
    """
    while True:
        try:
            summary = publishing.publish_batch(collection_pk)
        except PublishPaused:
            stages.send(PUBLISH, collection_pk, delay_ms=int(settings.PUBLISH_PAUSE_RETRY * 1000))
            return
        if not summary.published and not summary.failed:
            return
