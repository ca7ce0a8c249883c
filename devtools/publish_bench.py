"""Publishing throughput (``manage.py bench_publish``, what ``make bench-publish`` calls).

On a fresh anvil (automine) and a fresh test database: N tokens minted, recorded by the
listener, their seeds committed and their metadata marked pinned — verified tokens ready to
publish. Then, timed, the publishing path (``chain.publishing.publish_batch`` through the
real sender: simulation, nonce, EIP-1559 fees, receipt) until every token is PUBLISHED, and the
listener run that marks them FINAL once the publish blocks have their confirmations. Done twice
in one run, on two collections: with batching (PUBLISH_BATCH_SIZE per transaction) and without
(one token per transaction). A benchmark, not a test: it prints figures, it does not fail.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from datetime import date
from pathlib import Path

from django.conf import settings
from django.db import connection
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, start_anvil
from chain.contract import bind
from chain.deployment import CollectionSpec, deploy_collection
from chain.listener import Listener
from chain.models import Chain
from chain.rpc import connect
from chain.seed_commit import commit_seeds
from devtools.doc_sections import write_section
from devtools.preflight import throwaway_database
from generation.models import Collection, Token
from ipfs.cid import cid_from_sha256

Status = Token.Status
DEPLOYER, _, PUBLISHER, COLLECTOR = ANVIL_ACCOUNTS[:4]


def run_publish_bench(
    tokens: int = 500, batch_size: int | None = None
) -> dict[int, dict[str, float]]:
    """Each run's seconds and transactions, by batch size: ``batch_size`` (PUBLISH_BATCH_SIZE
    when None) and 1, on one fresh anvil and a throwaway database."""
    for name in ("chain.sender", "chain.publishing", "chain.listener"):
        logging.getLogger(name).setLevel(logging.WARNING)  # a line per transaction is noise
    saved = settings.PUBLISH_BATCH_SIZE
    try:
        with throwaway_database(), start_anvil() as anvil:
            w3 = connect(anvil.rpc_url)
            return {size: _run(w3, tokens, size) for size in (batch_size or saved, 1)}
    finally:
        settings.PUBLISH_BATCH_SIZE = saved


def write_report(path: Path, lines: list[str]) -> None:
    """The report's table as the ``bench-publish`` section of ``path`` (docs/benchmarks.md)."""
    write_section(path, "bench-publish", [
        "## Publishing",
        "",
        "Fresh anvil (automine: a block per transaction) and a fresh database; N tokens "
        "minted, seeds committed, metadata pinned, then timed from the first publish "
        "to every token FINAL (publish transactions through the real sender, tokenURI "
        "read back, the listener marking them final), batched and one per transaction.",
        "",
        *lines,
        "",
        f"- Date: {date.today().isoformat()}; machine: {os.cpu_count()} cores, "
        f"{connection.vendor}",
        "- Reproduce: `make bench-publish`",
    ])  # fmt: skip


def _run(w3: Web3, n: int, size: int) -> dict[str, float]:
    collection = deploy_collection(
        w3, DEPLOYER.private_key,
        CollectionSpec(slug=f"bench-{size}", max_supply=n, price_wei=0, confirmations=1),
    )  # fmt: skip
    _ready_to_publish(w3, collection, n)
    settings.PUBLISH_BATCH_SIZE = size
    from chain.publishing import publish_batch

    nonce = w3.eth.get_transaction_count(PUBLISHER.address)
    chain = Chain.objects.get(chain_id=collection.chain_id)
    started = time.perf_counter()
    while publish_batch(collection.pk).published:
        pass
    w3.provider.make_request("anvil_mine", [chain.confirmations])
    Listener(w3, chain, on_confirmed=lambda c, pks: None).poll()
    seconds = time.perf_counter() - started
    final = Token.objects.filter(collection=collection, status=Status.FINAL).count()
    if final != n:
        raise RuntimeError(f"{final} of {n} tokens FINAL after publishing")
    return {
        "seconds": seconds,
        "transactions": w3.eth.get_transaction_count(PUBLISHER.address) - nonce,
    }


def _ready_to_publish(w3: Web3, collection: Collection, n: int) -> None:
    contract = bind(w3, collection.contract_address)
    per_tx = 20
    nonce = w3.eth.get_transaction_count(COLLECTOR.address)
    last = None
    for i, start in enumerate(range(0, n, per_tx)):
        tx = contract.functions.mint(min(per_tx, n - start)).build_transaction(
            {"from": COLLECTOR.address, "nonce": nonce + i, "gas": 3_000_000}
        )
        signed = w3.eth.account.sign_transaction(tx, COLLECTOR.private_key)
        last = w3.eth.send_raw_transaction(signed.raw_transaction)
    w3.eth.wait_for_transaction_receipt(last, timeout=300)
    chain = Chain.objects.get(chain_id=collection.chain_id)
    w3.provider.make_request("anvil_mine", [chain.confirmations + 1])
    handed: list[int] = []
    Listener(w3, chain, on_confirmed=lambda c, pks: handed.extend(pks)).poll()
    for start in range(0, len(handed), settings.SEED_COMMIT_BATCH_SIZE):
        commit_seeds(
            w3, collection, handed[start : start + settings.SEED_COMMIT_BATCH_SIZE],
            lambda token: None,
        )  # fmt: skip
    for token in Token.objects.filter(collection=collection, status=Status.SEED_COMMITTED):
        digest = hashlib.sha256(f"{collection.slug} {token.token_id}".encode()).digest()
        Token.objects.filter(pk=token.pk).update(
            status=Status.PINNED, metadata_sha256=digest.hex(), metadata_cid=cid_from_sha256(digest)
        )  # fmt: skip
    pinned = Token.objects.filter(collection=collection, status=Status.PINNED).count()
    if pinned != n:
        raise RuntimeError(f"only {pinned} of {n} tokens reached PINNED")


def report(n: int, runs: dict[int, dict[str, float]]) -> list[str]:
    lines = ["| publishing | tokens | transactions | seconds | tokens per minute |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for size, run in runs.items():
        label = f"batched, up to {size} per transaction" if size > 1 else "one per transaction"
        lines.append(
            f"| {label} | {n} | {run['transactions']} | {run['seconds']:.1f} | "
            f"{60 * n / run['seconds']:,.0f} |"
        )
    sizes = sorted(runs, reverse=True)
    if len(sizes) == 2:
        batched, single = runs[sizes[0]], runs[sizes[1]]
        lines.append(
            f"| batched / one per transaction | | "
            f"{batched['transactions'] / single['transactions']:.2f} | | "
            f"{single['seconds'] / batched['seconds']:.1f}x faster |"
        )
    return lines
