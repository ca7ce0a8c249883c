"""Having the contract commit the seeds of confirmed mints, and checking each one.

Called by the ``commit_seeds`` actor with the tokens one listener range confirmed. The contract
derives each seed from ``blockhash(seedBlock)``; the backend only triggers it, then accepts a
seed only if it equals the one derived here from the chain's own block hash.

For a collection seeded by Chainlink VRF, the first delivery requests the random word (its
``commitSeeds``); the tokens wait, CONFIRMED and saying so, until the coordinator fulfils the
request, then their expected seed is derived from the word and recorded with the request id and
the fulfilment transaction. The seed block is the mint block, or for a collection with a
``seed_delay`` of k the block k blocks after it (future-block seeds). Such a token waits, CONFIRMED and saying so, until its
seed block has the chain's confirmations; then its expected seed is derived here from that
block's hash and the commit goes ahead. The actor sends the waiting tokens again after
``SEED_BLOCK_POLL`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from web3 import Web3
from web3.contract import Contract

from chain import wallets
from chain.contract import bind, call_per_token
from chain.heads import confirmed_block
from chain.models import Chain
from chain.seeds import derive_seed
from chain.sender import send_transaction
from generation import events, stages
from generation.models import Collection, Token

log = logging.getLogger(__name__)
Status = Token.Status


def commit_seeds(
    w3: Web3,
    collection: Collection,
    token_pks: list[int],
    on_committed: Callable[[Token], None],
    on_waiting: Callable[[list[int]], None] | None = None,
) -> tuple[int, int]:
    """Commit and check the seeds of those of ``token_pks`` still CONFIRMED.

    Returns (committed, mismatched). Tokens that left CONFIRMED meanwhile (reorged, already
    committed by an earlier delivery) are left alone. Tokens whose seed block is not confirmed
    yet (a collection with a seed delay) are handed to ``on_waiting``, by primary key.
    """
    pending = list(
        Token.objects.filter(
            pk__in=token_pks, collection=collection, status=Status.CONFIRMED
        ).order_by("token_id")
    )
    waiting: list[Token] = []
    if collection.vrf_coordinator and pending:
        pending, waiting = _with_vrf_words(w3, collection, pending)
    elif collection.seed_delay and pending:
        pending, waiting = _with_seed_blocks(w3, collection, pending)
    if waiting and on_waiting is not None:
        on_waiting([t.pk for t in waiting])
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
                f"{token.expected_seed} from block {token.seed_block_hash or token.mint_block_hash}"
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


def _with_seed_blocks(
    w3: Web3, collection: Collection, tokens: list[Token]
) -> tuple[list[Token], list[Token]]:
    """(tokens whose seed block is confirmed, with their expected seed derived from its hash;
    tokens still waiting for theirs, saying so)."""
    chain = Chain.objects.get(chain_id=collection.chain_id)
    _, confirmed = confirmed_block(w3, chain)
    ready: list[Token] = []
    waiting: list[Token] = []
    hashes: dict[int, bytes] = {}
    for token in tokens:
        seed_block = token.mint_block_number + collection.seed_delay
        if seed_block > confirmed:
            waiting.append(token)
            continue
        if not token.expected_seed:
            if seed_block not in hashes:
                hashes[seed_block] = bytes(w3.eth.get_block(seed_block)["hash"])
            token.seed_block_hash = "0x" + hashes[seed_block].hex()
            token.expected_seed = "0x" + derive_seed(hashes[seed_block], token.token_id).hex()
            Token.objects.filter(pk=token.pk, status=Status.CONFIRMED).update(
                expected_seed=token.expected_seed, seed_block_hash=token.seed_block_hash
            )
        ready.append(token)
    if waiting:
        last = max(t.mint_block_number for t in waiting) + collection.seed_delay
        Token.objects.filter(pk__in=[t.pk for t in waiting], status=Status.CONFIRMED).update(
            failure_reason=seed_block_waiting_note(last, confirmed)
        )
    return ready, waiting


def seed_block_waiting_note(seed_block: int, confirmed: int) -> str:
    """What a token of a collection with a seed delay says while its seed block is young."""
    return f"waiting for seed block {seed_block} to be confirmed (confirmed: block {confirmed})"


def vrf_waiting_note(request_ids: list[int]) -> str:
    """What a VRF-seeded token says while its request waits for the coordinator."""
    return f"waiting for the VRF coordinator to fulfil request {', '.join(map(str, request_ids))}"


def vrf_seed(token_id: int, request_id: int, word: int, fulfil_tx: str) -> tuple[str, dict]:
    """(expected seed, seed record) of a token whose VRF request was fulfilled with ``word``:
    the record is what the token's provenance names (generation/metadata.py)."""
    word_bytes = word.to_bytes(32, "big")
    record = {
        "request_id": str(request_id),
        "random_word": "0x" + word_bytes.hex(),
        "fulfil_tx": fulfil_tx,
    }
    return "0x" + derive_seed(word_bytes, token_id).hex(), record


def fulfilment_tx(contract: Contract, request_id: int, from_block: int) -> str:
    """The transaction in which the coordinator fulfilled ``request_id`` (its SeedsFulfilled)."""
    (event,) = contract.events.SeedsFulfilled().get_logs(
        argument_filters={"requestId": request_id}, from_block=from_block
    )
    return event["transactionHash"].to_0x_hex()


def _with_vrf_words(
    w3: Web3, collection: Collection, tokens: list[Token]
) -> tuple[list[Token], list[Token]]:
    """(tokens whose VRF request is fulfilled, with their expected seed derived from its word;
    tokens waiting for it). Batches without a request yet get one, in one transaction."""
    contract = bind(w3, collection.contract_address)
    requests = call_per_token(w3, contract, "vrfRequestOf", [t.token_id for t in tokens])
    unrequested = [t.token_id for t in tokens if int(requests[t.token_id][0]) == 0]
    if unrequested:
        receipt = send_transaction(
            w3,
            wallets.seed_committer(collection.chain_id),
            contract.functions.commitSeeds(unrequested),
        )
        log.info(
            "%s: VRF requested for tokens %s in %s",
            collection.slug,
            unrequested,
            receipt["transactionHash"].to_0x_hex(),
        )
        requests.update(call_per_token(w3, contract, "vrfRequestOf", unrequested))
    ready: list[Token] = []
    waiting: list[Token] = []
    fulfilments: dict[int, str] = {}
    for token in tokens:
        request_id, word = (int(v) for v in requests[token.token_id])
        if word == 0:
            waiting.append(token)
            continue
        if not token.expected_seed:
            if request_id not in fulfilments:
                fulfilments[request_id] = fulfilment_tx(
                    contract, request_id, token.mint_block_number
                )
            token.expected_seed, token.seed_record = vrf_seed(
                token.token_id, request_id, word, fulfilments[request_id]
            )
            Token.objects.filter(pk=token.pk, status=Status.CONFIRMED).update(
                expected_seed=token.expected_seed, seed_record=token.seed_record
            )
        ready.append(token)
    if waiting:
        pending_ids = sorted({int(requests[t.token_id][0]) for t in waiting})
        Token.objects.filter(pk__in=[t.pk for t in waiting], status=Status.CONFIRMED).update(
            failure_reason=vrf_waiting_note(pending_ids)
        )
    return ready, waiting


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
