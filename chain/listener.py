"""Reading mints from the chain, committing their seeds, and handing them to generation.

Thin for now: the chain-listener issue adds reorg handling, adaptive log ranges, leader
election and RPC failover. What holds already: nothing is read before it has the collection's
confirmations, each mint is recorded once (unique token id and unique log), the cursor moves
in the same database transaction as the rows it covers, and a seed is accepted only if the
contract's equals the one derived here from the chain's own block hash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.types import LogReceipt

from chain import wallets
from chain.contract import bind
from chain.models import ChainCursor
from chain.seeds import derive_seed
from chain.sender import send_transaction
from generation.models import Collection, Token

log = logging.getLogger(__name__)

TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
ZERO_TOPIC = "0x" + "00" * 32
SEED_BATCH = 100

Status = Token.Status


@dataclass
class PollSummary:
    head: int = 0
    mints: int = 0
    seeds_committed: int = 0
    seed_mismatches: int = 0
    finalized: int = 0

    def add(self, other: PollSummary) -> None:
        self.head = max(self.head, other.head)
        self.mints += other.mints
        self.seeds_committed += other.seeds_committed
        self.seed_mismatches += other.seed_mismatches
        self.finalized += other.finalized

    def __str__(self) -> str:
        return (
            f"head={self.head} mints={self.mints} seeds_committed={self.seeds_committed} "
            f"seed_mismatches={self.seed_mismatches} finalized={self.finalized}"
        )


class Listener:
    """Polls one chain for the mints of its collections.

    ``on_seed_committed`` receives each token whose seed is committed and checked; the daemon
    passes a function that enqueues rendering.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        on_seed_committed: Callable[[Token], None],
        log_range: int = 2000,
    ) -> None:
        self.w3 = w3
        self.chain_id = w3.eth.chain_id
        self.on_seed_committed = on_seed_committed
        self.log_range = log_range

    def poll(self, collections: list[Collection]) -> PollSummary:
        summary = PollSummary()
        for collection in collections:
            if collection.chain_id != self.chain_id:
                continue
            summary.add(self.poll_collection(collection))
        return summary

    def poll_collection(self, collection: Collection) -> PollSummary:
        summary = PollSummary(head=self.w3.eth.block_number)
        summary.mints = self._ingest_mints(collection, summary.head)
        committed, mismatched = self.commit_pending_seeds(collection)
        summary.seeds_committed, summary.seed_mismatches = committed, mismatched
        summary.finalized = Token.objects.filter(
            collection=collection,
            status=Status.PUBLISHED,
            publish_block_number__lte=summary.head - collection.confirmations,
        ).update(status=Status.FINAL)
        return summary

    def _ingest_mints(self, collection: Collection, head: int) -> int:
        confirmed_up_to = head - collection.confirmations
        cursor = ChainCursor.objects.filter(collection=collection).first()
        start = cursor.block_number + 1 if cursor else collection.deployment_block
        recorded = 0
        while start <= confirmed_up_to:
            end = min(confirmed_up_to, start + self.log_range - 1)
            logs = self.w3.eth.get_logs(
                {
                    "address": to_checksum_address(collection.contract_address),
                    "fromBlock": start,
                    "toBlock": end,
                    "topics": [TRANSFER_TOPIC, ZERO_TOPIC],
                }
            )
            end_hash = self.w3.eth.get_block(end)["hash"].to_0x_hex()
            with transaction.atomic():
                for entry in logs:
                    recorded += self._record_mint(collection, entry)
                ChainCursor.objects.update_or_create(
                    collection=collection,
                    defaults={"block_number": end, "block_hash": end_hash},
                )
            start = end + 1
        return recorded

    def _record_mint(self, collection: Collection, entry: LogReceipt) -> int:
        address = to_checksum_address(entry["address"])
        if address != to_checksum_address(collection.contract_address):
            # The node was asked for this contract's logs only; one from elsewhere is not ours.
            log.warning("ignoring a log from %s while reading %s", address, collection)
            return 0
        topics = entry["topics"]
        if len(topics) != 4 or topics[0].to_0x_hex() != TRANSFER_TOPIC:
            return 0
        token_id = int.from_bytes(topics[3], "big")
        block_hash = bytes(entry["blockHash"])
        _, created = Token.objects.get_or_create(
            collection=collection,
            token_id=token_id,
            defaults={
                "owner": to_checksum_address(topics[2][-20:]),
                "mint_tx_hash": entry["transactionHash"].to_0x_hex(),
                "mint_log_index": entry["logIndex"],
                "mint_block_number": entry["blockNumber"],
                "mint_block_hash": "0x" + block_hash.hex(),
                "expected_seed": "0x" + derive_seed(block_hash, token_id).hex(),
                "status": Status.CONFIRMED,
            },
        )
        if created:
            log.info(
                "mint of %s #%d in block %d",
                collection.slug,
                token_id,
                entry["blockNumber"],
            )
        return int(created)

    def commit_pending_seeds(self, collection: Collection) -> tuple[int, int]:
        """Have the contract commit the seeds of confirmed tokens, then check each one."""
        pending = list(
            Token.objects.filter(collection=collection, status=Status.CONFIRMED).order_by(
                "token_id"
            )[:SEED_BATCH]
        )
        if not pending:
            return 0, 0
        contract = bind(self.w3, collection.contract_address)
        on_chain = {
            t.token_id: bytes(contract.functions.seedOf(t.token_id).call()) for t in pending
        }
        to_commit = [t.token_id for t in pending if on_chain[t.token_id] == bytes(32)]
        tx_hash = ""
        if to_commit:
            receipt = send_transaction(
                self.w3,
                wallets.seed_committer(collection.chain_id),
                contract.functions.commitSeeds(to_commit),
            )
            tx_hash = receipt["transactionHash"].to_0x_hex()
            for token_id in to_commit:
                on_chain[token_id] = bytes(contract.functions.seedOf(token_id).call())
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
                Token.objects.filter(pk=token.pk, status=Status.CONFIRMED).update(
                    status=Status.FAILED, failure_reason=reason, seed=stored
                )
                continue
            claimed = Token.objects.filter(pk=token.pk, status=Status.CONFIRMED).update(
                status=Status.SEED_COMMITTED,
                seed=stored,
                seed_tx_hash=tx_hash if token.token_id in to_commit else "",
            )
            if claimed == 1:
                committed += 1
                token.refresh_from_db()
                self.on_seed_committed(token)
        return committed, mismatched
