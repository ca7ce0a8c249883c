"""Dramatiq actors of the chain side (thin shells; the work is in chain/seed_commit.py)."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from django.conf import settings

from chain.chains import web3_for
from chain.errors import WalletCannotPay
from chain.seed_commit import commit_seeds as commit_and_check
from generation import pipeline
from generation.models import Collection, Token
from generation.tasks import BOOKKEEPING

log = logging.getLogger(__name__)


def enqueue_seed_commits(collection: Collection, token_pks: list[int]) -> None:
    """What the listener calls with the tokens a range confirmed: one message per few hundred,
    never splitting one mint transaction (its tokens share one seed record on-chain)."""
    rows = (
        Token.objects.filter(pk__in=token_pks)
        .order_by("token_id")
        .values_list("pk", "mint_tx_hash")
    )
    chunk: list[int] = []
    last_tx = None
    for pk, tx in rows:
        if len(chunk) >= settings.SEED_COMMIT_BATCH_SIZE and tx != last_tx:
            commit_seeds.send(collection.pk, chunk)
            chunk = []
        chunk.append(pk)
        last_tx = tx
    if chunk:
        commit_seeds.send(collection.pk, chunk)


@dramatiq.actor(queue_name="io", **BOOKKEEPING)
def record_commit_failure(message_data: dict[str, Any], retry_data: dict[str, Any]) -> None:
    traceback = message_data.get("options", {}).get("traceback", "").strip()
    last_error = traceback.splitlines()[-1] if traceback else "no traceback recorded"
    for token_pk in message_data["args"][1]:
        pipeline.mark_failed(
            token_pk, f"commit_seeds gave up after {retry_data['retries']} retries: {last_error}"
        )


@dramatiq.actor(
    queue_name="io",
    max_retries=8,
    min_backoff=1_000,
    max_backoff=60_000,
    time_limit=5 * 60_000,
    on_retry_exhausted="record_commit_failure",
)
def commit_seeds(collection_pk: int, token_pks: list[int]) -> None:
    from generation.tasks import render_token

    collection = Collection.objects.filter(pk=collection_pk).first()
    if collection is None:
        return
    try:
        commit_and_check(
            web3_for(collection.chain_id),
            collection,
            token_pks,
            on_committed=lambda token: render_token.send(token.pk),
        )
    except WalletCannotPay as exc:
        # Not a failure of these tokens: the committer needs funds. They stay CONFIRMED, the
        # reason is on them, and this message comes back until the wallet can pay.
        log.error("seed commits paused for %s: %s", collection.slug, exc)
        Token.objects.filter(pk__in=token_pks, status=Token.Status.CONFIRMED).update(
            failure_reason=f"waiting for the seed commit: {exc}"[:2000]
        )
        commit_seeds.send_with_options(
            args=(collection_pk, token_pks), delay=int(settings.PUBLISH_PAUSE_RETRY * 1000)
        )
