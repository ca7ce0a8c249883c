"""Having the contract commit the seeds of confirmed mints, and checking each one.

Called by the ``commit_seeds`` actor with the tokens one listener range confirmed. The contract
derives each seed from ``blockhash(mintBlock)``; the backend only triggers it, then accepts a
seed only if it equals the one derived here from the chain's own block hash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from web3 import Web3

from chain import wallets
from chain.contract import bind, call_per_token
from chain.sender import send_transaction
from generation import events, stages
from generation.models import Collection, Token

log = logging.getLogger(__name__)
Status = Token.Status


def commit_seeds(
    w3: Web3, collection: Collection, token_pks: list[int], on_committed: Callable[[Token], None]
) -> tuple[int, int]:
    """Commit and check the seeds of those of ``token_pks`` still CONFIRMED.

    Returns (committed, mismatched). Tokens that left CONFIRMED meanwhile (reorged, already
    committed by an earlier delivery) are left alone.
    """
    pending = list(
        Token.objects.filter(
            pk__in=token_pks, collection=collection, status=Status.CONFIRMED
        ).order_by("token_id")
    )
    if not pending:
        return 0, 0
    contract = bind(w3, collection.contract_address)
    on_chain = _seeds(w3, contract, [t.token_id for t in pending])
    to_commit = [t.token_id for t in pending if on_chain[t.token_id] == bytes(32)]
    tx_hash = ""
    if to_commit:
        receipt = send_transaction(
            w3,
            wallets.seed_committer(collection.chain_id),
            contract.functions.commitSeeds(to_commit),
        )
        tx_hash = receipt["transactionHash"].to_0x_hex()
        on_chain.update(_seeds(w3, contract, to_commit))
    committed = mismatched = 0
    for token in pending:
        stored = "0x" + on_chain[token.token_id].hex()
        if stored != token.expected_seed:
            mismatched += 1
            reason = (
                f"seed mismatch: the contract stored {stored}, derived off-chain "
                f"{token.expected_seed} from block {token.mint_block_hash}"
            )
            log.error("%s: %s", token, reason)
            if Token.objects.filter(pk=token.pk, status=Status.CONFIRMED).update(
                status=Status.FAILED, failure_reason=reason, seed=stored
            ):
                events.record([token.pk], Status.FAILED, reason)
            continue
        claimed = Token.objects.filter(pk=token.pk, status=Status.CONFIRMED).update(
            status=Status.SEED_COMMITTED,
            seed=stored,
            seed_tx_hash=tx_hash if token.token_id in to_commit else "",
            failure_reason="",  # a pause's "waiting for the seed commit" is over
        )
        if claimed == 1:
            events.record([token.pk], Status.SEED_COMMITTED, f"seed {stored}")
            committed += 1
            token.refresh_from_db()
            on_committed(token)
    return committed, mismatched


def _seeds(w3: Web3, contract, token_ids: list[int]) -> dict[int, bytes]:
    return {t: bytes(seed) for t, seed in call_per_token(w3, contract, "seedOf", token_ids).items()}


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
            stages.send(stages.SEED_COMMIT, collection.pk, chunk)
            chunk = []
        chunk.append(pk)
        last_tx = tx
    if chunk:
        stages.send(stages.SEED_COMMIT, collection.pk, chunk)
