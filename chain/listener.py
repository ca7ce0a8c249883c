"""Reading mints from the chain: reorg-safe, exactly once, with adaptive log ranges.

Per collection, a cursor holds the last processed block (number and hash) and the hashes of the
``finality_depth`` blocks up to it. Each poll:

1. Checks that the chain still has the cursor's block. If not, it walks back through the stored
   hashes to the newest block the chain still agrees with, marks every token minted after it
   REORGED (their queued work then finds nothing to do, and nothing of theirs is published),
   and resumes from there; mints that reappear are recorded again, once, with their new block.
   No stored block matching means the reorg is deeper than the finality window:
   ``DeepReorg`` stops the daemon rather than let it go on with wrong data.
2. Reads the contract's ``Transfer`` logs in block ranges that halve when the node refuses a
   range and double while answers stay small; checks each log's ``blockHash`` against the
   block's own hash (a mismatch means the node answered across a reorg: the range is read
   again); and records the mints (transfers from the zero address), the later transfers of
   known tokens (``TokenTransfer``: the token's ``owner`` becomes the latest one's recipient),
   and moves the cursor, in one database transaction. A reorg also deletes the transfers of the
   blocks it removed and sets each owner back.
3. Hands the newly confirmed tokens to ``on_confirmed`` (the daemon enqueues seed commits).

Before that, a collection whose freeze was prepared for an external signer (chain/freeze.py) is
recorded as frozen once its contract holds the prepared digest at the confirmed block.

Only blocks with the chain's confirmations (a depth, or the node's ``safe``/``finalized`` tag)
are read, so nothing is seeded, rendered or published before a mint has them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import Web3RPCError

from chain.errors import ChainError, DeepReorg, LogsAcrossReorg
from chain.freeze import FreezeRefused, record_freeze
from chain.heads import confirmed_block
from chain.models import Chain, ChainCursor, TokenTransfer
from chain.rpc import check_chain_id
from chain.seeds import derive_seed
from foundation.logcontext import log_context, update_context
from generation import events
from generation.models import Collection, Token

log = logging.getLogger(__name__)

TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
ZERO_TOPIC = "0x" + "00" * 32
MIN_RANGE = 1
SMALL_ANSWER = 1000  # logs; below this the next range may double
Status = Token.Status


@dataclass(frozen=True, slots=True)
class RawLog:
    """The fields of an ``eth_getLogs`` entry the listener uses, as the node sent them."""

    address: str  # lowercase
    topics: tuple[str, ...]  # lowercase 0x hex
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int

    @classmethod
    def parse(cls, entry: dict[str, Any]) -> RawLog:
        return cls(
            address=entry["address"].lower(),
            topics=tuple(topic.lower() for topic in entry["topics"]),
            block_number=int(entry["blockNumber"], 16),
            block_hash=entry["blockHash"].lower(),
            tx_hash=entry["transactionHash"].lower(),
            log_index=int(entry["logIndex"], 16),
        )


@dataclass
class PollSummary:
    head: int = 0
    mints: int = 0
    transfers: int = 0
    reincluded: int = 0
    reorged: int = 0
    finalized: int = 0
    ranges: int = 0

    def add(self, other: PollSummary) -> None:
        self.head = max(self.head, other.head)
        self.mints += other.mints
        self.transfers += other.transfers
        self.reincluded += other.reincluded
        self.reorged += other.reorged
        self.finalized += other.finalized
        self.ranges += other.ranges

    def __str__(self) -> str:
        return (
            f"head={self.head} mints={self.mints} transfers={self.transfers} "
            f"reincluded={self.reincluded} "
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
        self._refused: dict[int, str] = {}  # collection pk -> the freeze mismatch last logged
        check_chain_id(w3, chain.chain_id)

    # -- the confirmed head ---------------------------------------------------------------
    def confirmed_block(self) -> tuple[int, int]:
        """(head, the newest block with the chain's confirmations)."""
        return confirmed_block(self.w3, self.chain)

    # -- polling --------------------------------------------------------------------------
    def poll(self) -> PollSummary:
        summary = PollSummary()
        head, confirmed = self.confirmed_block()
        summary.head = head
        for collection in Collection.objects.filter(chain_id=self.chain.chain_id):
            if self.should_stop():
                break
            with log_context(chain_id=self.chain.chain_id, collection=collection.slug):
                if collection.prepared_config_digest and not collection.config_digest:
                    self._notice_freeze(collection, confirmed)
                summary.add(self.poll_collection(collection, confirmed))
        with transaction.atomic():
            final = list(
                Token.objects.filter(
                    collection__chain_id=self.chain.chain_id,
                    status=Status.PUBLISHED,
                    publish_block_number__lte=confirmed,
                ).values_list("pk", flat=True)
            )
            summary.finalized = Token.objects.filter(pk__in=final, status=Status.PUBLISHED).update(
                status=Status.FINAL
            )
            events.record(final, Status.FINAL, f"publish block confirmed (head {head})")
        return summary

    def _notice_freeze(self, collection: Collection, confirmed: int) -> None:
        """Record a freeze signed outside this backend (chain/freeze.py) once it is confirmed."""
        try:
            record_freeze(self.w3, collection, confirmed)
        except FreezeRefused as exc:
            if self._refused.get(collection.pk) != str(exc):  # once, not on every poll
                log.error("%s", exc)
                self._refused[collection.pk] = str(exc)

    def poll_collection(self, collection: Collection, confirmed: int) -> PollSummary:
        summary = PollSummary()
        cursor = ChainCursor.objects.filter(collection=collection).first()
        if cursor is not None:
            summary.reorged = self._follow_reorg(collection, cursor)
            cursor.refresh_from_db()
        start = cursor.block_number + 1 if cursor else collection.deployment_block
        while start <= confirmed and not self.should_stop():
            end = min(confirmed, start + self.range - 1)
            update_context(blocks=f"{start}-{end}")  # on every line logged for this range
            began = time.perf_counter()
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
            read = time.perf_counter()
            new, reincluded, moved = self._record(collection, cursor, logs, blocks, start, end)
            recorded = time.perf_counter()
            cursor = ChainCursor.objects.get(collection=collection)
            summary.mints += len(new)
            summary.transfers += moved
            summary.reincluded += len(reincluded)
            summary.ranges += 1
            if new or reincluded:
                self.on_confirmed(collection, new + reincluded)
                log.info(
                    "%s: %d mints in blocks %d-%d (read %.2f s, recorded %.2f s, handed over "
                    "%.2f s)", collection.slug, len(new) + len(reincluded), start, end,
                    read - began, recorded - read, time.perf_counter() - recorded,
                )  # fmt: skip
            if len(logs) < SMALL_ANSWER and self.range < self.chain.log_range:
                self.range = min(self.chain.log_range, self.range * 2)
            start = end + 1
        return summary

    def requeue_confirmed(self, older_than: float | None = None) -> int:
        """Hand over again the tokens still waiting for their seed commit.

        A crash between recording a range and handing it over (or a lost message) would leave
        tokens CONFIRMED with no commit queued; the commit stage ignores tokens past
        CONFIRMED, so handing one over twice is harmless. The daemon calls this when it becomes
        leader and then every few minutes for tokens untouched for ``older_than`` seconds.
        """
        waiting = Token.objects.filter(
            collection__chain_id=self.chain.chain_id, status=Status.CONFIRMED
        )
        if older_than is not None:
            waiting = waiting.filter(updated_at__lt=timezone.now() - timedelta(seconds=older_than))
        count = 0
        for collection in Collection.objects.filter(chain_id=self.chain.chain_id):
            pks = list(waiting.filter(collection=collection).values_list("pk", flat=True))
            if pks:
                self.on_confirmed(collection, pks)
                count += len(pks)
        if count:
            log.info("chain %d: handed over %d confirmed tokens again", self.chain.chain_id, count)
        return count

    # -- reading --------------------------------------------------------------------------
    def _read_range(
        self, collection: Collection, start: int, end: int
    ) -> tuple[list[RawLog], dict[int, str]]:
        """The range's mint logs, and the hashes of the blocks the cursor will need."""
        logs = self._get_logs(collection, start, end)
        wanted = {entry.block_number for entry in logs}
        # the window kept for reorg checks, and the block before the range (continuity)
        wanted.update(range(max(start, end - self.chain.finality_depth + 1), end + 1))
        if start > 0:
            wanted.add(start - 1)
        blocks = self._block_hashes(wanted)
        for entry in logs:
            if entry.block_hash != blocks[entry.block_number]:
                raise LogsAcrossReorg(
                    f"log {entry.tx_hash}:{entry.log_index} names block {entry.block_hash}, "
                    f"but block {entry.block_number} is {blocks[entry.block_number]}"
                )
        return logs, blocks

    def _get_logs(self, collection: Collection, start: int, end: int) -> list[RawLog]:
        # Asked raw: web3's result formatting (checksums, HexBytes, AttributeDicts) costs more
        # than the node's answer for large backfills, and the fields needed here are few.
        response = self.w3.provider.make_request(
            "eth_getLogs",
            [
                {
                    "address": to_checksum_address(collection.contract_address),
                    "fromBlock": hex(start),
                    "toBlock": hex(end),
                    "topics": [TRANSFER_TOPIC],
                }
            ],
        )
        if "error" in response:
            raise Web3RPCError(str(response["error"]), rpc_response=response)
        return [RawLog.parse(entry) for entry in response["result"]]

    def _block_hashes(self, numbers: set[int]) -> dict[int, str]:
        """Hashes of the given blocks, asked in JSON-RPC batches and read raw (headers only)."""
        ordered = sorted(numbers)
        hashes: dict[int, str] = {}
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            answers = self.w3.provider.make_batch_request(  # type: ignore[attr-defined]
                [("eth_getBlockByNumber", [hex(n), False]) for n in chunk]
            )
            if isinstance(answers, dict):  # the node refused the whole batch
                raise Web3RPCError(str(answers.get("error", answers)), rpc_response=answers)
            for number, answer in zip(chunk, answers, strict=True):
                block = answer.get("result")
                if "error" in answer or block is None:
                    raise ChainError(f"block {number} is not available: {answer.get('error')}")
                hashes[number] = block["hash"].lower()
        return hashes

    # -- recording ------------------------------------------------------------------------
    def _record(
        self,
        collection: Collection,
        cursor: ChainCursor | None,
        logs: list[RawLog],
        blocks: dict[int, str],
        start: int,
        end: int,
    ) -> tuple[list[int], list[int], int]:
        """Record the range's mints and transfers and move the cursor, in one transaction: the
        new tokens' pks, the reincluded ones', and how many transfers were recorded."""
        contract = collection.contract_address.lower()
        owners: dict[str, str] = {}  # checksumming costs a keccak: once per owner, not per log
        rows: dict[int, Token] = {}
        transfers: list[RawLog] = []
        for entry in logs:
            if entry.address != contract:
                log.warning("ignoring a log from %s while reading %s", entry.address, collection)
                continue
            if len(entry.topics) != 4 or entry.topics[0] != TRANSFER_TOPIC:
                continue
            if entry.topics[1] != ZERO_TOPIC:
                transfers.append(entry)  # a later transfer: recorded after the mints
                continue
            token_id = int(entry.topics[3], 16)
            owner = entry.topics[2][-40:]
            if owner not in owners:
                owners[owner] = to_checksum_address("0x" + owner)
            rows[token_id] = Token(
                collection=collection,
                token_id=token_id,
                owner=owners[owner],
                mint_tx_hash=entry.tx_hash,
                mint_log_index=entry.log_index,
                mint_block_number=entry.block_number,
                mint_block_hash=entry.block_hash,
                # with a seed delay the seed block is not confirmed yet, and a VRF word is not
                # requested yet: the seed committer derives the seed later (chain/seed_commit.py)
                expected_seed=""
                if collection.seed_delay or collection.vrf_coordinator
                else "0x" + derive_seed(bytes.fromhex(entry.block_hash[2:]), token_id).hex(),
                status=Status.CONFIRMED,
            )
        recent = [[n, h] for n, h in (cursor.recent_blocks if cursor else []) if n < start]
        recent += [[n, blocks[n]] for n in sorted(blocks) if start <= n <= end]
        recent = [[n, h] for n, h in recent if n > end - self.chain.finality_depth]
        with transaction.atomic():
            # ERC721A ids are sequential: a range finds the rows seen before without sending
            # thousands of ids to the database.
            existing = {
                t.token_id: t
                for t in Token.objects.select_for_update().filter(
                    collection=collection,
                    token_id__gte=min(rows, default=0),
                    token_id__lte=max(rows, default=-1),
                )
                if t.token_id in rows
            }
            new = [row for token_id, row in rows.items() if token_id not in existing]
            _insert(new)
            reincluded = []
            for token_id, row in rows.items():
                old = existing.get(token_id)
                if old is None or old.status != Status.REORGED:
                    continue  # seen before and still valid: exactly once
                # The mint came back after a reorg: process it once more, as the new block has it.
                for field in (
                    "owner", "mint_tx_hash", "mint_log_index", "mint_block_number",
                    "mint_block_hash", "expected_seed", "seed_block_hash",
                ):  # fmt: skip
                    setattr(old, field, getattr(row, field))
                _reset_for_reinclusion(old)
                old.save()
                reincluded.append(old.pk)
            events.record([row.pk for row in new], Status.CONFIRMED, "mint confirmed")
            events.record(reincluded, Status.CONFIRMED, "mint confirmed again after a reorg")
            moved = _record_transfers(collection, transfers, owners)
            ChainCursor.objects.update_or_create(
                collection=collection,
                defaults={"block_number": end, "block_hash": blocks[end], "recent_blocks": recent},
            )
        new_pks = [row.pk for row in new]  # bulk_create returns them (PostgreSQL, SQLite)
        return new_pks, reincluded, moved

    # -- reorgs ---------------------------------------------------------------------------
    def _follow_reorg(self, collection: Collection, cursor: ChainCursor) -> int:
        """Roll the collection back to the newest block the chain still has; return REORGED count."""
        on_chain = self.w3.eth.get_block(cursor.block_number)["hash"].to_0x_hex()
        if on_chain == cursor.block_hash:
            return 0
        stored = sorted(cursor.recent_blocks, reverse=True)
        current = self._block_hashes({n for n, _ in stored})
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
            gone = list(
                Token.objects.filter(collection=collection, mint_block_number__gt=ancestor)
                .exclude(status=Status.REORGED)
                .values_list("pk", flat=True)
            )
            reason = f"its mint block was reorganised away (common ancestor {ancestor})"
            reorged = Token.objects.filter(pk__in=gone).update(
                status=Status.REORGED, failure_reason=reason
            )
            events.record(gone, Status.REORGED, reason)
            _undo_transfers(collection, ancestor)
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


def _record_transfers(
    collection: Collection, transfers: list[RawLog], owners: dict[str, str]
) -> int:
    """Record the transfers of known tokens (mints come first, so a token minted in the same
    range is known) and make each token's owner its latest recipient; how many were new.
    Transfers of tokens this backend does not hold, or holds as REORGED, are skipped."""
    if not transfers:
        return 0

    def address(topic: str) -> str:
        raw = topic[-40:]
        if raw not in owners:
            owners[raw] = to_checksum_address("0x" + raw)
        return owners[raw]

    ids = {int(entry.topics[3], 16) for entry in transfers}
    tokens = {
        t.token_id: t
        for t in Token.objects.select_for_update()
        .filter(collection=collection, token_id__in=ids)
        .exclude(status=Status.REORGED)
    }
    rows = [
        TokenTransfer(
            token=tokens[int(entry.topics[3], 16)],
            from_address=address(entry.topics[1]),
            to_address=address(entry.topics[2]),
            block_number=entry.block_number,
            block_hash=entry.block_hash,
            tx_hash=entry.tx_hash,
            log_index=entry.log_index,
        )
        for entry in sorted(transfers, key=lambda e: (e.block_number, e.log_index))
        if int(entry.topics[3], 16) in tokens
    ]
    before = TokenTransfer.objects.filter(token__in=tokens.values()).count()
    TokenTransfer.objects.bulk_create(rows, ignore_conflicts=True)
    _set_owners(list(tokens.values()))
    return TokenTransfer.objects.filter(token__in=tokens.values()).count() - before


def _set_owners(tokens: list[Token], fallback: dict[int, str] | None = None) -> None:
    """Each token's owner from its recorded transfers, in one query: the latest one's
    recipient, else ``fallback[pk]`` (the owner before the first transfer), else unchanged."""
    latest = dict(
        TokenTransfer.objects.filter(token__in=tokens)
        .order_by("token_id", "block_number", "log_index")
        .values_list("token_id", "to_address")
    )  # the last row per token wins
    for token in tokens:
        owner = latest.get(token.pk, (fallback or {}).get(token.pk))
        if owner is not None and owner != token.owner:
            Token.objects.filter(pk=token.pk).update(owner=owner)


def _undo_transfers(collection: Collection, ancestor: int) -> None:
    """Forget the transfers of blocks after ``ancestor`` (a reorg removed them) and set each
    owner back: to the latest transfer that stays, or to the sender of the first one removed."""
    gone = TokenTransfer.objects.filter(
        token__collection=collection, block_number__gt=ancestor
    ).order_by("block_number", "log_index")
    first_sender: dict[int, str] = {}
    for transfer in gone:
        first_sender.setdefault(transfer.token_id, transfer.from_address)
    gone.delete()
    _set_owners(list(Token.objects.filter(pk__in=first_sender)), fallback=first_sender)


def _reset_for_reinclusion(token: Token) -> None:
    """Forget everything derived from the vanished mint block: it all starts again."""
    token.status = Status.CONFIRMED
    token.attempt = 0
    token.render_record = {}
    token.clip_scores = {}
    token.seed_record = {}
    token.publish_block_number = None
    for field in (
        "failure_reason", "seed", "seed_tx_hash", "image_sha256", "image_cid", "metadata_cid",
        "metadata_sha256", "publish_tx_hash",
    ):  # fmt: skip
        setattr(token, field, "")


_MINT_FIELDS = {
    "collection_id", "token_id", "owner", "mint_tx_hash", "mint_log_index", "mint_block_number",
    "mint_block_hash", "expected_seed", "status",
}  # fmt: skip


def _insert(tokens: list[Token]) -> None:
    """Insert new tokens and set their primary keys.

    On PostgreSQL through COPY, which a backfill of thousands of mints needs (an INSERT binds
    every column of every row as a parameter, several times slower); elsewhere bulk_create.
    """
    if not tokens:
        return
    if connection.vendor != "postgresql":
        Token.objects.bulk_create(tokens, batch_size=2000)
        return
    fields = [f for f in Token._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(Token._meta.db_table)
    # Only the mint fields differ from row to row; every other column gets its default,
    # adapted once (adapting 23 columns per row was most of a 10,000-mint backfill's time).
    now = timezone.now()
    template = [
        now if f.attname in ("created_at", "updated_at")
        else f.get_db_prep_save(f.get_default(), connection)
        for f in fields
    ]  # fmt: skip
    varying = [(i, f.attname) for i, f in enumerate(fields) if f.attname in _MINT_FIELDS]
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for token in tokens:
            row = list(template)
            for i, attname in varying:
                row[i] = getattr(token, attname)
            copy.write_row(row)
    ids = dict(
        Token.objects.filter(
            collection=tokens[0].collection_id,
            token_id__gte=min(t.token_id for t in tokens),
            token_id__lte=max(t.token_id for t in tokens),
        ).values_list("token_id", "pk")
    )
    for token in tokens:
        token.pk = ids[token.token_id]
