"""Reading mints from the chain: reorg-safe, exactly once, with adaptive log ranges.

Per collection, a cursor holds the last processed block (number and hash) and the hashes of the
``finality_depth`` blocks up to it. Each poll:

1. Checks that the chain still has the cursor's block. If not, it walks back through the stored
   hashes to the newest block the chain still agrees with, marks every token minted after it
   REORGED (their queued work then finds nothing to do, and nothing of theirs is published),
   and resumes from there; mints that reappear are recorded again, once, with their new block.
   No stored block matching means the reorg is deeper than the finality window:
   ``DeepReorg`` stops the daemon rather than let it go on with wrong data.
2. Reads ``Transfer`` logs from the zero address in block ranges that halve when the node
   refuses a range and double while answers stay small; checks each log's ``blockHash`` against
   the block's own hash (a mismatch means the node answered across a reorg: the range is read
   again); and records the mints and moves the cursor in one database transaction.
3. Hands the newly confirmed tokens to ``on_confirmed`` (the daemon enqueues seed commits).

Only blocks with the chain's confirmations (a depth, or the node's ``safe``/``finalized`` tag)
are read, so nothing is seeded, rendered or published before a mint has them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.types import BlockData, LogReceipt

from chain.errors import ChainError
from chain.models import Chain, ChainCursor
from chain.seeds import derive_seed
from generation.models import Collection, Token

log = logging.getLogger(__name__)

TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
ZERO_TOPIC = "0x" + "00" * 32
MIN_RANGE = 1
SMALL_ANSWER = 1000  # logs; below this the next range may double
Status = Token.Status


class DeepReorg(ChainError, RuntimeError):
    """The chain replaced blocks older than the finality window: stop, don't guess."""


class LogsAcrossReorg(ChainError, RuntimeError):
    """A log's block hash is not its block's: the node answered across a reorg."""


@dataclass
class PollSummary:
    head: int = 0
    mints: int = 0
    reincluded: int = 0
    reorged: int = 0
    finalized: int = 0
    ranges: int = 0

    def add(self, other: PollSummary) -> None:
        self.head = max(self.head, other.head)
        self.mints += other.mints
        self.reincluded += other.reincluded
        self.reorged += other.reorged
        self.finalized += other.finalized
        self.ranges += other.ranges

    def __str__(self) -> str:
        return (
            f"head={self.head} mints={self.mints} reincluded={self.reincluded} "
            f"reorged={self.reorged} finalized={self.finalized} ranges={self.ranges}"
        )


def _is_range_refusal(exc: Web3RPCError) -> bool:
    """Nodes say "too many results" or "range too large" in many words; all mean: ask less."""
    text = str(exc).lower()
    return any(
        word in text
        for word in ("range", "too large", "too many", "limit", "exceed", "10000 results", "-32005")
    )


class Listener:
    """Follows one chain for all of its collections."""

    def __init__(
        self,
        w3: Web3,
        chain: Chain,
        *,
        on_confirmed: Callable[[Collection, list[int]], None],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.w3 = w3
        self.chain = chain
        self.on_confirmed = on_confirmed
        self.should_stop = should_stop
        self.range = chain.log_range
        served = w3.eth.chain_id
        if served != chain.chain_id:
            raise ChainError(
                f"the RPC at {chain.urls()} serves chain {served}, not {chain.chain_id}"
            )

    # -- the confirmed head ---------------------------------------------------------------
    def confirmed_block(self) -> tuple[int, int]:
        """(head, the newest block with the chain's confirmations)."""
        head = self.w3.eth.block_number
        if self.chain.confirmation_tag:
            tagged = self.w3.eth.get_block(self.chain.confirmation_tag)["number"]
            return head, min(head, tagged)
        return head, head - self.chain.confirmations

    # -- polling --------------------------------------------------------------------------
    def poll(self) -> PollSummary:
        summary = PollSummary()
        head, confirmed = self.confirmed_block()
        summary.head = head
        for collection in Collection.objects.filter(chain_id=self.chain.chain_id):
            if self.should_stop():
                break
            summary.add(self.poll_collection(collection, confirmed))
        summary.finalized = Token.objects.filter(
            collection__chain_id=self.chain.chain_id,
            status=Status.PUBLISHED,
            publish_block_number__lte=confirmed,
        ).update(status=Status.FINAL)
        return summary

    def poll_collection(self, collection: Collection, confirmed: int) -> PollSummary:
        summary = PollSummary()
        cursor = ChainCursor.objects.filter(collection=collection).first()
        if cursor is not None:
            summary.reorged = self._follow_reorg(collection, cursor)
            cursor.refresh_from_db()
        start = cursor.block_number + 1 if cursor else collection.deployment_block
        while start <= confirmed and not self.should_stop():
            end = min(confirmed, start + self.range - 1)
            try:
                logs, blocks = self._read_range(collection, start, end)
            except Web3RPCError as exc:
                if not _is_range_refusal(exc) or end == start:
                    raise
                self.range = max(MIN_RANGE, (end - start + 1) // 2)
                log.info("node refused %d blocks; asking for %d", end - start + 1, self.range)
                continue
            except LogsAcrossReorg as exc:
                log.warning("%s; reading blocks %d-%d again", exc, start, end)
                time.sleep(0.2)
                break  # the next poll checks the cursor for a reorg, then reads again
            if cursor is not None and start > 0 and blocks[start - 1] != cursor.block_hash:
                break  # the chain moved under us since the reorg check; the next poll sees it
            new, reincluded = self._record(collection, cursor, logs, blocks, start, end)
            cursor = ChainCursor.objects.get(collection=collection)
            summary.mints += len(new)
            summary.reincluded += len(reincluded)
            summary.ranges += 1
            if new or reincluded:
                self.on_confirmed(collection, new + reincluded)
            if len(logs) < SMALL_ANSWER and self.range < self.chain.log_range:
                self.range = min(self.chain.log_range, self.range * 2)
            start = end + 1
        return summary

    # -- reading --------------------------------------------------------------------------
    def _read_range(
        self, collection: Collection, start: int, end: int
    ) -> tuple[list[LogReceipt], dict[int, str]]:
        """The range's mint logs, and the hashes of the blocks the cursor will need."""
        logs = self.w3.eth.get_logs(
            {
                "address": to_checksum_address(collection.contract_address),
                "fromBlock": start,
                "toBlock": end,
                "topics": [TRANSFER_TOPIC, ZERO_TOPIC],
            }
        )
        wanted = {entry["blockNumber"] for entry in logs}
        # the window kept for reorg checks, and the block before the range (continuity)
        wanted.update(range(max(start, end - self.chain.finality_depth + 1), end + 1))
        if start > 0:
            wanted.add(start - 1)
        blocks = {number: block["hash"].to_0x_hex() for number, block in self._blocks(wanted)}
        for entry in logs:
            if entry["blockHash"].to_0x_hex() != blocks[entry["blockNumber"]]:
                raise LogsAcrossReorg(
                    f"log {entry['transactionHash'].to_0x_hex()}:{entry['logIndex']} names block "
                    f"{entry['blockHash'].to_0x_hex()}, but block {entry['blockNumber']} is "
                    f"{blocks[entry['blockNumber']]}"
                )
        return logs, blocks

    def _blocks(self, numbers: set[int]) -> list[tuple[int, BlockData]]:
        ordered = sorted(numbers)
        found: list[tuple[int, BlockData]] = []
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            with self.w3.batch_requests() as batch:
                for number in chunk:
                    batch.add(self.w3.eth.get_block(number))
                found += list(zip(chunk, batch.execute(), strict=True))
        return found

    # -- recording ------------------------------------------------------------------------
    def _record(
        self,
        collection: Collection,
        cursor: ChainCursor | None,
        logs: list[LogReceipt],
        blocks: dict[int, str],
        start: int,
        end: int,
    ) -> tuple[list[int], list[int]]:
        contract = to_checksum_address(collection.contract_address)
        rows: dict[int, Token] = {}
        for entry in logs:
            if to_checksum_address(entry["address"]) != contract:
                log.warning("ignoring a log from %s while reading %s", entry["address"], collection)
                continue
            topics = entry["topics"]
            if len(topics) != 4:
                continue
            token_id = int.from_bytes(topics[3], "big")
            block_hash = bytes(entry["blockHash"])
            rows[token_id] = Token(
                collection=collection,
                token_id=token_id,
                owner=to_checksum_address(topics[2][-20:]),
                mint_tx_hash=entry["transactionHash"].to_0x_hex(),
                mint_log_index=entry["logIndex"],
                mint_block_number=entry["blockNumber"],
                mint_block_hash="0x" + block_hash.hex(),
                expected_seed="0x" + derive_seed(block_hash, token_id).hex(),
                status=Status.CONFIRMED,
            )
        recent = [[n, h] for n, h in (cursor.recent_blocks if cursor else []) if n < start]
        recent += [[n, blocks[n]] for n in sorted(blocks) if start <= n <= end]
        recent = [[n, h] for n, h in recent if n > end - self.chain.finality_depth]
        with transaction.atomic():
            existing = {
                t.token_id: t
                for t in Token.objects.select_for_update().filter(
                    collection=collection, token_id__in=list(rows)
                )
            }
            new = [row for token_id, row in rows.items() if token_id not in existing]
            Token.objects.bulk_create(new, batch_size=2000)
            reincluded = []
            for token_id, row in rows.items():
                old = existing.get(token_id)
                if old is None or old.status != Status.REORGED:
                    continue  # seen before and still valid: exactly once
                # The mint came back after a reorg: process it once more, as the new block has it.
                for field in (
                    "owner", "mint_tx_hash", "mint_log_index", "mint_block_number",
                    "mint_block_hash", "expected_seed",
                ):  # fmt: skip
                    setattr(old, field, getattr(row, field))
                _reset_for_reinclusion(old)
                old.save()
                reincluded.append(old.pk)
            ChainCursor.objects.update_or_create(
                collection=collection,
                defaults={"block_number": end, "block_hash": blocks[end], "recent_blocks": recent},
            )
        new_pks = list(
            Token.objects.filter(
                collection=collection, token_id__in=[row.token_id for row in new]
            ).values_list("pk", flat=True)
        )
        if new:
            log.info("%s: %d mints in blocks %d-%d", collection.slug, len(new), start, end)
        return new_pks, reincluded

    # -- reorgs ---------------------------------------------------------------------------
    def _follow_reorg(self, collection: Collection, cursor: ChainCursor) -> int:
        """Roll the collection back to the newest block the chain still has; return REORGED count."""
        on_chain = self.w3.eth.get_block(cursor.block_number)["hash"].to_0x_hex()
        if on_chain == cursor.block_hash:
            return 0
        stored = sorted(cursor.recent_blocks, reverse=True)
        current = dict(
            (number, block["hash"].to_0x_hex())
            for number, block in self._blocks({n for n, _ in stored})
        )
        ancestor = next((n for n, h in stored if current.get(n) == h), None)
        if ancestor is None:
            raise DeepReorg(
                f"{collection}: block {cursor.block_number} was {cursor.block_hash}, the chain now "
                f"has {on_chain}, and none of the {len(stored)} blocks kept (finality depth "
                f"{self.chain.finality_depth}) still matches: the reorg is deeper than the "
                "finality window. Stopping; check the node, then raise finality_depth or "
                "re-sync this collection by hand."
            )
        with transaction.atomic():
            reorged = (
                Token.objects.filter(collection=collection, mint_block_number__gt=ancestor)
                .exclude(status=Status.REORGED)
                .update(
                    status=Status.REORGED,
                    failure_reason=f"its mint block was reorganised away (common ancestor {ancestor})",
                )
            )
            ChainCursor.objects.filter(pk=cursor.pk).update(
                block_number=ancestor,
                block_hash=current[ancestor],
                recent_blocks=[[n, h] for n, h in cursor.recent_blocks if n <= ancestor],
            )
        log.warning(
            "%s: reorg below block %d (was %s, now %s); rolled back to %d, %d tokens REORGED",
            collection, cursor.block_number, cursor.block_hash, on_chain, ancestor, reorged,
        )  # fmt: skip
        return reorged


def _reset_for_reinclusion(token: Token) -> None:
    """Forget everything derived from the vanished mint block: it all starts again."""
    token.status = Status.CONFIRMED
    token.attempt = 0
    token.render_record = {}
    token.clip_scores = {}
    token.publish_block_number = None
    for field in (
        "failure_reason", "seed", "seed_tx_hash", "image_sha256", "image_cid", "metadata_cid",
        "metadata_sha256", "publish_tx_hash",
    ):  # fmt: skip
        setattr(token, field, "")
