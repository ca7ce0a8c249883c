"""Listener catch-up rate (``manage.py bench_listener``, what ``make bench-listener`` calls).

Mints N tokens on a fresh anvil in batches, then, on a fresh test database, times the listener
from nothing to every mint recorded and handed to the seed-commit queue. In the same run it
times ``eth_getLogs`` alone returning the same logs (the floor no listener can beat) and prints
both, their ratio and the RPC calls made. A benchmark, not a test: it prints figures, it does not
fail on them (targets: at least 2,000 mints/s on PostgreSQL, within 3x of the floor).
"""

from __future__ import annotations

import os
import time
from datetime import date
from pathlib import Path
from typing import Any

from django.db import connection
from eth_account import Account

from chain.anvil import ANVIL_ACCOUNTS, start_anvil
from chain.contract import bind, deploy_contract, freeze_config
from chain.listener import TRANSFER_TOPIC, ZERO_TOPIC, Listener
from chain.models import Chain
from chain.rpc import connect, rpc_stats
from chain.seed_commit import enqueue_seed_commits
from devtools.doc_sections import write_section
from devtools.errors import BenchmarkError
from devtools.preflight import bench_broker, throwaway_database
from generation.models import Collection, Token


def run_listener_bench(
    mints: int = 10_000, per_tx: int = 50, log_range: int = 5_000
) -> dict[str, Any]:
    """The figures of one run: a fresh anvil, a throwaway database, the benchmark's namespace."""
    with bench_broker(), throwaway_database(), start_anvil() as anvil:
        return _run(anvil.rpc_url, mints, per_tx, log_range)


def _run(rpc_url: str, mints: int, per_tx: int, log_range: int) -> dict[str, Any]:
    w3 = connect(rpc_url)
    deployer, collector = ANVIL_ACCOUNTS[0], Account.from_key(ANVIL_ACCOUNTS[3].private_key)
    address, block = deploy_contract(
        w3, deployer.private_key, name="Bench", symbol="B", price_wei=0,
        max_supply=mints, max_per_tx=per_tx,
    )  # fmt: skip
    freeze_config(w3, deployer.private_key, address, b"\x01" * 32, "ipfs://bench")
    contract = bind(w3, address)
    started = time.perf_counter()
    nonce = w3.eth.get_transaction_count(collector.address)
    last = None
    for i in range(mints // per_tx):
        tx = contract.functions.mint(per_tx).build_transaction(
            {"from": collector.address, "nonce": nonce + i, "gas": 200_000 + 40_000 * per_tx}
        )
        last = w3.eth.send_raw_transaction(collector.sign_transaction(tx).raw_transaction)
    w3.eth.wait_for_transaction_receipt(last, timeout=600)
    mint_seconds = time.perf_counter() - started
    w3.provider.make_request("anvil_mine", [2])
    head = w3.eth.block_number

    chain = Chain.objects.create(
        chain_id=w3.eth.chain_id, rpc_urls=rpc_url, confirmations=1,
        log_range=log_range,
    )  # fmt: skip
    collection = Collection.objects.create(
        slug="bench", name="Bench", chain_id=chain.chain_id, contract_address=address,
        deployment_block=block, model_dir="-", clip_dir="-", prompt_template="-",
        style_prompt="-", clip_threshold=0.0,
    )  # fmt: skip

    # The floor: eth_getLogs alone (the JSON-RPC call and its JSON decoding), same ranges.
    floor_client = connect(rpc_url)
    started = time.perf_counter()
    floor_logs = 0
    for start in range(block, head, log_range):
        params = {
            "address": address,
            "fromBlock": hex(start),
            "toBlock": hex(min(head - 1, start + log_range - 1)),
            "topics": [TRANSFER_TOPIC, ZERO_TOPIC],
        }
        answer = floor_client.provider.make_request("eth_getLogs", [params])
        floor_logs += len(answer["result"])
    floor_seconds = time.perf_counter() - started
    # The same logs through web3's get_logs, as a Python client usually asks for them
    # (its result formatting is most of that time; the listener reads the raw answer).
    started = time.perf_counter()
    for start in range(block, head, log_range):
        floor_client.eth.get_logs(
            {
                "address": address,
                "fromBlock": start,
                "toBlock": min(head - 1, start + log_range - 1),
                "topics": [TRANSFER_TOPIC, ZERO_TOPIC],
            }
        )
    web3_seconds = time.perf_counter() - started

    listener_client = connect(rpc_url)
    handed: list[int] = []

    def hand_over(c: Collection, pks: list[int]) -> None:
        enqueue_seed_commits(c, pks)
        handed.extend(pks)

    started = time.perf_counter()
    listener = Listener(listener_client, chain, on_confirmed=hand_over)
    summary = listener.poll()
    listen_seconds = time.perf_counter() - started
    recorded = Token.objects.filter(collection=collection).count()
    if recorded != mints or len(handed) != mints or floor_logs != mints:
        raise BenchmarkError(
            f"expected {mints} mints: recorded {recorded}, handed over {len(handed)}, "
            f"eth_getLogs returned {floor_logs}"
        )
    return {
        "mints": mints,
        "per_tx": per_tx,
        "blocks": head - block,
        "mint_seconds": mint_seconds,
        "listen_seconds": listen_seconds,
        "floor_seconds": floor_seconds,
        "web3_seconds": web3_seconds,
        "rpc_calls": rpc_stats(listener_client)["requests"],
        "ranges": summary.ranges,
        "database": connection.vendor,
    }


def report(f: dict[str, Any]) -> list[str]:
    rate = f["mints"] / f["listen_seconds"]
    ratio = f["listen_seconds"] / f["floor_seconds"]
    return [
        "| measure | value |",
        "|---|---:|",
        f"| mints ({f['per_tx']} per transaction, {f['blocks']} blocks) | {f['mints']:,} |",
        f"| database | {f['database']} |",
        f"| listener: nothing to all recorded and handed over | {f['listen_seconds']:.2f} s |",
        f"| listener rate | {rate:,.0f} mints/s (target >= 2,000: "
        f"{'PASS' if rate >= 2000 else 'FAIL'}) |",
        f"| eth_getLogs alone, same ranges, JSON decoded (floor) | {f['floor_seconds']:.2f} s |",
        f"| listener / floor | {ratio:.2f}x (target <= 3x: {'PASS' if ratio <= 3 else 'FAIL'}) |",
        f"| web3 `eth.get_logs`, same ranges (formatted results) | {f['web3_seconds']:.2f} s |",
        f"| listener / web3 `get_logs` | {f['listen_seconds'] / f['web3_seconds']:.2f}x |",
        f"| listener RPC calls (a batch counts once) | {f['rpc_calls']} |",
        f"| log ranges read | {f['ranges']} |",
    ]


def write_report(path: Path, lines: list[str]) -> None:
    """The report's table as the ``bench-listener`` section of ``path`` (docs/benchmarks.md)."""
    write_section(
        path,
        "bench-listener",
        [
            "## Listener catch-up",
            "",
            "Fresh anvil and a fresh database; the listener (one process) goes from nothing to "
            "every mint recorded and handed to the seed-commit queue, and `eth_getLogs` alone "
            "returning the same logs is timed in the same run.",
            "",
            *lines,
            "",
            f"- Date: {date.today().isoformat()}; machine: {os.cpu_count()} cores",
            "- Reproduce: `make bench-listener` (PostgreSQL when `DATABASE_URL` is set)",
        ],
    )
