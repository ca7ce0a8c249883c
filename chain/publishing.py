"""Publishing pinned tokens on-chain, several per transaction.

Tokens wait in PINNED until a ``publish_pending`` run for their collection claims them: up to
``PUBLISH_BATCH_SIZE`` at a time, in token-id order, by stamping a claim id on them in one
conditional UPDATE, so two runs never publish the same token. The claimed tokens' digests go
on-chain in ONE ``publish(tokenIds, digests)`` transaction through the sender
(``chain/sender.py``), which simulates it first, replaces it if it sticks, and returns its
receipt only at the chain's confirmation depth. Then each token's ``tokenURI`` is read back
and must name its metadata's CID, and the tokens become PUBLISHED (FINAL once the listener sees
the publish block confirmed).

Safe to repeat: a token whose digest is already on-chain (a crash after the transaction) is not
sent again, only checked. A claim left by a crashed run is taken over after
``PUBLISH_CLAIM_TIMEOUT``. When the publisher wallet cannot pay for gas, nothing fails: the
claimed tokens go back to PINNED with the reason in ``failure_reason`` (the admin and the API
show it), and the caller retries later.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from chain import wallets
from chain.chains import web3_for
from chain.contract import bind, call_per_token
from chain.errors import ChainMismatch, PublishPaused, TransactionReverted, WalletCannotPay
from chain.sender import send_transaction
from generation import events
from generation.errors import PublishFailed
from generation.models import Token
from generation.pipeline import mark_failed

log = logging.getLogger(__name__)
Status = Token.Status


@dataclass
class PublishSummary:
    published: list[int] = field(default_factory=list)  # token pks now PUBLISHED
    failed: list[int] = field(default_factory=list)  # token pks now FAILED
    tx_hash: str = ""  # the publish transaction, if one was sent


def _claimable(collection_pk: int) -> Q:
    stale = timezone.now() - timedelta(seconds=settings.PUBLISH_CLAIM_TIMEOUT)
    return Q(collection_id=collection_pk, collection__paused=False) & (
        Q(status=Status.PINNED) | Q(status=Status.PUBLISHING, updated_at__lt=stale)
    )


def claim(collection_pk: int, limit: int) -> list[Token]:
    """Take up to ``limit`` publishable tokens of the collection for this run, in id order."""
    candidates = list(
        Token.objects.filter(_claimable(collection_pk))
        .order_by("token_id")
        .values_list("pk", flat=True)[:limit]
    )
    if not candidates:
        return []
    claim_id = uuid.uuid4().hex
    Token.objects.filter(_claimable(collection_pk), pk__in=candidates).update(
        status=Status.PUBLISHING, publish_claim=claim_id, updated_at=timezone.now()
    )
    claimed = list(
        Token.objects.filter(publish_claim=claim_id, status=Status.PUBLISHING)
        .select_related("collection")
        .order_by("token_id")
    )
    events.record([t.pk for t in claimed], Status.PUBLISHING)
    return claimed


def publish_batch(collection_pk: int, limit: int | None = None) -> PublishSummary:
    """Claim and publish one batch of the collection's pinned tokens (see the module doc)."""
    tokens = claim(collection_pk, limit or settings.PUBLISH_BATCH_SIZE)
    summary = PublishSummary()
    if not tokens:
        return summary
    collection = tokens[0].collection
    claim_id = tokens[0].publish_claim
    try:
        try:
            w3 = web3_for(collection.chain_id)
        except ChainMismatch as exc:  # the configuration is wrong: retrying cannot help
            log.error("%s: cannot publish: %s", collection.slug, exc)  # names the RPC hosts
            raise PublishFailed(
                f"the chain's RPC serves chain {exc.served}, not {exc.expected}"
            ) from exc
        contract = bind(w3, collection.contract_address)
        on_chain = {
            t: bytes(d)
            for t, d in call_per_token(
                w3, contract, "metadataDigestOf", [t.token_id for t in tokens]
            ).items()
        }
        to_send: list[Token] = []
        for token in tokens:
            ours, theirs = bytes.fromhex(token.metadata_sha256), on_chain[token.token_id]
            if theirs == bytes(32):
                to_send.append(token)
            elif theirs != ours:
                _fail(token, f"the contract holds digest 0x{theirs.hex()}, ours is 0x{ours.hex()}")
                summary.failed.append(token.pk)
        block = w3.eth.block_number
        if to_send:
            receipt = send_transaction(
                w3,
                wallets.publisher(collection.chain_id),
                contract.functions.publish(
                    [t.token_id for t in to_send],
                    [bytes.fromhex(t.metadata_sha256) for t in to_send],
                ),
                purpose=f"publish {collection.slug} " + ",".join(str(t.token_id) for t in to_send),
            )
            summary.tx_hash = receipt["transactionHash"].to_0x_hex()
            block = receipt["blockNumber"]
        sent = {t.pk for t in to_send}
        uris = call_per_token(
            w3, contract, "tokenURI", [t.token_id for t in tokens if t.pk not in summary.failed]
        )
    except WalletCannotPay as exc:
        log.error("%s: publishing paused: %s", collection.slug, exc)
        _release(claim_id, exc.public_reason("waiting to publish"))
        raise PublishPaused(str(exc)) from exc
    except PublishFailed as exc:  # the configuration is wrong: retrying cannot help
        for token in tokens:
            _fail(token, str(exc))
        summary.failed = [t.pk for t in tokens]
        return summary
    except TransactionReverted as exc:
        if len(tokens) == 1:
            _fail(tokens[0], f"the publish transaction reverts: {exc}")
            summary.failed = [tokens[0].pk]
            return summary
        # One bad token must not hold up the rest: publish them one per transaction.
        _release(claim_id, "")
        for _ in tokens:
            alone = publish_batch(collection_pk, limit=1)
            summary.published += alone.published
            summary.failed += alone.failed
        return summary
    except BaseException:
        _release(claim_id, "")  # the next run takes them again at once
        raise
    for token in tokens:
        if token.pk in summary.failed:
            continue
        if uris[token.token_id] != token.token_uri:
            _fail(
                token,
                f"tokenURI is {uris[token.token_id]!r} after publishing, "
                f"expected {token.token_uri!r}",
            )
            summary.failed.append(token.pk)
            continue
        updated = Token.objects.filter(
            pk=token.pk, status=Status.PUBLISHING, publish_claim=claim_id
        ).update(
            status=Status.PUBLISHED,
            publish_tx_hash=summary.tx_hash if token.pk in sent else token.publish_tx_hash,
            publish_block_number=block,
            failure_reason="",
        )
        if updated:
            summary.published.append(token.pk)
    events.record(summary.published, Status.PUBLISHED, f"tx {summary.tx_hash or 'earlier'}")
    log.info(
        "%s: published %d token(s) in %s, %d failed",
        collection.slug,
        len(summary.published),
        summary.tx_hash or "no new transaction",
        len(summary.failed),
    )
    return summary


def _release(claim_id: str, reason: str) -> None:
    released = list(
        Token.objects.filter(publish_claim=claim_id, status=Status.PUBLISHING).values_list(
            "pk", flat=True
        )
    )
    Token.objects.filter(pk__in=released, status=Status.PUBLISHING).update(
        status=Status.PINNED, publish_claim="", failure_reason=reason[:2000]
    )
    events.record(released, Status.PINNED, reason or "publishing interrupted; to be retried")


def _fail(token: Token, reason: str) -> None:
    mark_failed(token.pk, f"publish: {reason}")
