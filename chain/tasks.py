"""Dramatiq actors of the chain side: seed commits and publishing (thin shells over
chain/seed_commit.py and chain/publishing.py), declared with the names, queues and options of
the stage table (generation/stages.py). They hand over by name: nothing here imports the render
actor."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import requests
from django.conf import settings
from web3.exceptions import ContractLogicError, Web3RPCError

from chain import publishing
from chain.chains import web3_for
from chain.errors import (
    ChainChanged,
    ChainMismatch,
    FeeCapExceeded,
    MissingKey,
    NonceConsumed,
    PublishPaused,
    RpcUnavailable,
    TransactionRejected,
    TransactionReverted,
    TransactionTimeout,
    WalletCannotPay,
)
from chain.seed_commit import commit_seeds as commit_and_check
from generation import failures, pipeline, stages
from generation.models import Collection, Token
from generation.stages import IO_QUEUE, PUBLISH, SEED_COMMIT

log = logging.getLogger(__name__)


# What a public failure_reason says of the chain side's errors (generation/failures.py): the
# error's own text, with its URLs and the node's answers, goes to the log only.
CHAIN_KINDS: failures.Kinds = (
    (RpcUnavailable, "the chain RPC was unavailable"),
    (requests.RequestException, "the chain RPC was unavailable"),
    (ContractLogicError, "a contract call reverted"),
    (Web3RPCError, "the chain RPC answered with an error"),
    (TransactionTimeout, "its transaction was not confirmed in time"),
    (FeeCapExceeded, "the chain's fees were above the cap (TX_MAX_FEE_GWEI)"),
    (TransactionReverted, "the transaction would revert"),
    (TransactionRejected, "the node rejected the transaction"),
    (NonceConsumed, "another transaction took the wallet's nonce; an operator must check"),
    (ChainChanged, "the chain's RPC serves another chain than before; an operator must check"),
    (ChainMismatch, "the chain's RPC serves another chain than configured"),
    (MissingKey, "no key is configured for the wallet"),
)


def _slug(collection_pk: int) -> str | None:
    return Collection.objects.filter(pk=collection_pk).values_list("slug", flat=True).first()


@dramatiq.actor(queue_name=IO_QUEUE, **stages.BOOKKEEPING)
def record_commit_failure(message_data: dict[str, Any], retry_data: dict[str, Any]) -> None:
    collection_pk, token_pks = message_data["args"][0], message_data["args"][1]
    reason = failures.gave_up(message_data, retry_data["retries"], CHAIN_KINDS)
    failures.log_detail(reason, message_data, collection=_slug(collection_pk), token_pks=token_pks)
    for token_pk in token_pks:
        pipeline.mark_failed(token_pk, reason)


@dramatiq.actor(actor_name=SEED_COMMIT.actor, queue_name=SEED_COMMIT.queue, **SEED_COMMIT.options)
def commit_seeds(collection_pk: int, token_pks: list[int]) -> None:
    collection = Collection.objects.filter(pk=collection_pk).first()
    if collection is None:
        return

    def render(token: Token) -> None:
        stages.hand_over(token.pk, collection_pk, SEED_COMMIT.hands_over_to)

    def wait(waiting: list[int]) -> None:
        # a seed block not confirmed yet (future-block seeds): ask again shortly
        stages.send(
            SEED_COMMIT, collection_pk, waiting, delay_ms=int(settings.SEED_BLOCK_POLL * 1000)
        )

    try:
        commit_and_check(
            web3_for(collection.chain_id),
            collection,
            token_pks,
            on_committed=render,
            on_waiting=wait,
        )
    except WalletCannotPay as exc:
        # Not a failure of these tokens: the committer needs funds. They stay CONFIRMED, the
        # reason is on them, and this message comes back until the wallet can pay.
        log.error("seed commits paused for %s: %s", collection.slug, exc)
        Token.objects.filter(pk__in=token_pks, status=Token.Status.CONFIRMED).update(
            failure_reason=exc.public_reason("waiting for the seed commit")
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
    collection_pk = message_data["args"][0]
    reason = failures.gave_up(message_data, retry_data["retries"], CHAIN_KINDS)
    reason += " (for now: the tokens stay PINNED and are tried again)"
    waiting = Token.objects.filter(collection_id=collection_pk, status=Token.Status.PINNED)
    pks = list(waiting.values_list("pk", flat=True))
    failures.log_detail(reason, message_data, collection=_slug(collection_pk), token_pks=pks)
    waiting.update(failure_reason=reason)


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
