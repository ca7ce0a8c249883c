"""Gas per token of MintOnDemand against a naive OpenZeppelin ERC721URIStorage baseline.

Run ``python -m devtools.gas_benchmark [--write docs/benchmarks.md]`` (``make gas``). In one run it
compiles both contracts fresh with ``node contracts/compile.js --out <tmp>``, starts its own anvil,
deploys both, sends the same operations to each and prints one table of receipt ``gasUsed`` per
token (the 21,000 base cost included), the ratios, and each target of issue 3 with PASS/FAIL. Exits
non-zero if a target fails. This is a benchmark, not a timed test: gas is deterministic.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multiformats import CID, multihash
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD

from chain.anvil import ANVIL_ACCOUNTS, AnvilAccount, find_anvil_binary, start_anvil
from chain.contract import VrfSettings, link_bytecode, send_and_wait
from devtools.doc_sections import write_head

# contracts/ is in the checkout, beside this package (a benchmark compiles the sources fresh)
REPO_ROOT = Path(__file__).resolve().parent.parent
PRICE_WEI = 10**15
MAX_SUPPLY = 1000
REPRODUCE = ".venv/bin/python -m devtools.gas_benchmark --write docs/benchmarks.md  # or: make gas"

ADMIN = ANVIL_ACCOUNTS[0]
# Every measured mint comes from a wallet minting for the first time on that contract, so both
# contracts pay the same zero-to-non-zero balance write; that is a collector's usual mint.
COLLECTORS = ANVIL_ACCOUNTS[1:4]


@dataclass(frozen=True)
class Row:
    operation: str
    tokens: int
    ours: float
    baseline: float

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline


@dataclass(frozen=True)
class Target:
    description: str
    met: bool
    detail: str


def compile_fresh(out: Path) -> dict[str, dict[str, Any]]:
    """Compile both contracts into ``out`` with the project's compile script; return the artifacts."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed to compile the contracts; is it on PATH?")
    subprocess.run(
        [node, str(REPO_ROOT / "contracts" / "compile.js"), "--out", str(out)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return {
        name: json.loads((out / f"{name}.json").read_text())
        for name in ("MintOnDemand", "SaleRules", "NaiveBaseline", "VRFCoordinatorV2_5Mock")
    }


def _deploy(
    w3: Web3, artifact: dict[str, Any], *args: Any, libraries: dict[str, str] | None = None
) -> Contract:
    bytecode = link_bytecode(artifact, libraries or {})
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=bytecode)
    receipt = send_and_wait(w3, ADMIN.private_key, factory.constructor(*args))
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def _gas(w3: Web3, fn: ContractFunction, sender: AnvilAccount, value: int = 0) -> int:
    return int(send_and_wait(w3, sender.private_key, fn, value)["gasUsed"])


def _cid_uri(digest: bytes) -> str:
    return "ipfs://" + str(CID("base32", 1, "raw", multihash.wrap(digest, "sha2-256")))


def measure(w3: Web3, contract: Contract, publish_arg: Callable[[bytes], Any]) -> dict[str, float]:
    """Gas per token of each benchmarked operation on ``contract``; tokens are ids 1..61."""
    f = contract.functions
    per_token: dict[str, float] = {}
    first, second, third = COLLECTORS
    per_token["mint q=1"] = _gas(w3, f.mint(1), first, PRICE_WEI)  # token 1
    per_token["mint q=10"] = _gas(w3, f.mint(10), second, 10 * PRICE_WEI) / 10  # 2..11
    for _ in range(5):  # 12..61, five transactions of ten
        send_and_wait(w3, third.private_key, f.mint(10), 10 * PRICE_WEI)

    per_token["commitSeeds 1"] = _gas(w3, f.commitSeeds([1]), ADMIN)
    fifty = list(range(12, 62))
    per_token["commitSeeds 50 (5x10)"] = _gas(w3, f.commitSeeds(fifty), ADMIN) / 50

    # Fixed digests (sha256-like, non-zero bytes) keep calldata, hence gas, the same every run.
    digests = [hashlib.sha256(f"metadata {i}".encode()).digest() for i in range(51)]
    per_token["publish 1"] = _gas(w3, f.publish([1], [publish_arg(digests[0])]), ADMIN)
    args = [publish_arg(d) for d in digests[1:]]
    per_token["publish 50"] = _gas(w3, f.publish(fifty, args), ADMIN) / 50
    return per_token


FUTURE_DELAY = 4  # the seed block of the future-block deployment: mint block + 4


def _mint_workload(w3: Web3, contract: Contract) -> None:
    """The mints :func:`measure` measures (tokens 1, 2..11, then 12..61 in five transactions),
    sent unmeasured, for the deployments whose seed commits are compared with them."""
    f = contract.functions
    first, second, third = COLLECTORS
    send_and_wait(w3, first.private_key, f.mint(1), PRICE_WEI)
    send_and_wait(w3, second.private_key, f.mint(10), 10 * PRICE_WEI)
    for _ in range(5):
        send_and_wait(w3, third.private_key, f.mint(10), 10 * PRICE_WEI)


def measure_future_block(w3: Web3, contract: Contract) -> dict[str, float]:
    """``commitSeeds`` on a deployment with a seed delay, the same mints and commits as
    :func:`measure` (the seed blocks mined first)."""
    f = contract.functions
    _mint_workload(w3, contract)
    for _ in range(FUTURE_DELAY + 1):
        w3.provider.make_request("evm_mine", [])
    per_token = {f"commitSeeds 1, seed delay {FUTURE_DELAY}": _gas(w3, f.commitSeeds([1]), ADMIN)}
    fifty = list(range(12, 62))
    key = f"commitSeeds 50 (5x10), seed delay {FUTURE_DELAY}"
    per_token[key] = _gas(w3, f.commitSeeds(fifty), ADMIN) / 50
    return per_token


def measure_vrf(w3: Web3, contract: Contract, mock: Contract) -> dict[str, float]:
    """``commitSeeds`` on a deployment seeded by Chainlink VRF (the request, one per call), the
    same mints and commits as :func:`measure`, and the coordinator's fulfilment of each request
    (paid by the subscription, not by the committer)."""
    f = contract.functions
    _mint_workload(w3, contract)
    per_token: dict[str, float] = {}
    fulfil: dict[str, float] = {}
    for label, ids in (("1", [1]), ("50 (5x10)", list(range(12, 62)))):
        receipt = send_and_wait(w3, ADMIN.private_key, f.commitSeeds(ids))
        per_token[f"commitSeeds {label}, VRF request"] = int(receipt["gasUsed"]) / len(ids)
        (asked,) = mock.events.RandomWordsRequested().process_receipt(receipt, errors=DISCARD)
        done = send_and_wait(
            w3,
            ADMIN.private_key,
            mock.functions.fulfillRandomWords(asked.args["requestId"], contract.address),
        )
        fulfil[f"VRF fulfilment of {label}"] = int(done["gasUsed"]) / len(ids)
    return per_token | fulfil


def _init(seed_delay: int, vrf: VrfSettings | None = None) -> tuple[Any, ...]:
    """MintOnDemand's InitConfig for the benchmark."""
    return (
        "Bench",
        "BEN",
        PRICE_WEI,
        MAX_SUPPLY,
        20,
        0,
        0,
        ADMIN.address,
        ADMIN.address,
        ADMIN.address,
        500,
        "ipfs://placeholder",
        seed_delay,
        (vrf or VrfSettings()).as_tuple(),
    )


def run_benchmark() -> tuple[list[Row], list[Target], dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="gas-bench-") as tmp:
        artifacts = compile_fresh(Path(tmp))
    with start_anvil() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        node_info = w3.provider.make_request("anvil_nodeInfo", [])["result"]
        rules = {"SaleRules": _deploy(w3, artifacts["SaleRules"]).address}
        ours = _deploy(w3, artifacts["MintOnDemand"], _init(0), libraries=rules)
        send_and_wait(w3, ADMIN.private_key, ours.functions.freezeConfig(b"\x01" * 32, "ipfs://c"))
        future = _deploy(w3, artifacts["MintOnDemand"], _init(FUTURE_DELAY), libraries=rules)
        send_and_wait(
            w3, ADMIN.private_key, future.functions.freezeConfig(b"\x01" * 32, "ipfs://c")
        )
        # Chainlink's VRFCoordinatorV2_5Mock with a funded subscription, and a collection on it
        mock = _deploy(w3, artifacts["VRFCoordinatorV2_5Mock"], 10**15, 10**9, 4 * 10**15)
        created = send_and_wait(w3, ADMIN.private_key, mock.functions.createSubscription())
        (event,) = mock.events.SubscriptionCreated().process_receipt(created, errors=DISCARD)
        subscription = int(event.args["subId"])
        send_and_wait(w3, ADMIN.private_key, mock.functions.fundSubscription(subscription, 10**24))
        vrf = VrfSettings(mock.address, subscription, b"\x00" * 31 + b"\x01")
        vrf_collection = _deploy(w3, artifacts["MintOnDemand"], _init(0, vrf), libraries=rules)
        send_and_wait(
            w3, ADMIN.private_key, mock.functions.addConsumer(subscription, vrf_collection.address)
        )
        send_and_wait(
            w3, ADMIN.private_key, vrf_collection.functions.freezeConfig(b"\x01" * 32, "ipfs://c")
        )
        baseline = _deploy(
            w3, artifacts["NaiveBaseline"], "Bench", "BEN", PRICE_WEI, MAX_SUPPLY, ADMIN.address
        )
        ours_gas = measure(w3, ours, lambda digest: digest)
        baseline_gas = measure(w3, baseline, _cid_uri)
        future_gas = measure_future_block(w3, future)
        vrf_gas = measure_vrf(w3, vrf_collection, mock)

    tokens = {"1": 1, "q=1": 1, "q=10": 10, "50": 50, "(5x10)": 50}
    rows = [Row(op, tokens[op.split()[-1]], ours_gas[op], baseline_gas[op]) for op in ours_gas]
    for op, gas in (future_gas | vrf_gas).items():  # against the baseline's seed commit
        same = op.split(",")[0].replace("VRF fulfilment of", "commitSeeds")
        rows.append(Row(op, tokens[same.split()[-1]], gas, baseline_gas[same]))
    by_op = {row.operation: row for row in rows}
    publish50, commit50, mint10 = (
        by_op["publish 50"],
        by_op["commitSeeds 50 (5x10)"],
        by_op["mint q=10"],
    )
    targets = [
        Target(
            "publish, batch of 50: <= 27,000 gas/token",
            publish50.ours <= 27_000,
            f"{publish50.ours:,.0f}",
        ),
        Target(
            "publish, batch of 50: < 50% of baseline",
            publish50.ratio < 0.5,
            f"{publish50.ratio:.1%}",
        ),
        Target(
            "seed commit, 50 tokens minted in 5 tx of 10: <= 12,000 gas/token",
            commit50.ours <= 12_000,
            f"{commit50.ours:,.0f}",
        ),
        Target(
            "mint, quantity 10: <= 60% of baseline per token",
            mint10.ratio <= 0.6,
            f"{mint10.ratio:.1%}",
        ),
    ]
    anvil_version = (
        subprocess.run(
            [find_anvil_binary(), "--version"], capture_output=True, text=True, check=True
        )
        .stdout.splitlines()[0]
        .removeprefix("anvil Version: ")
    )
    compiler = artifacts["MintOnDemand"]["compiler"]
    env = {
        "solc": f"{compiler['version']} (optimizer runs {compiler['settings']['optimizer']['runs']}, evmVersion {compiler['settings']['evmVersion']})",
        "anvil": f"{anvil_version} (default hardfork: {node_info['hardFork']})",
    }
    return rows, targets, env


def render_table(rows: list[Row], targets: list[Target]) -> str:
    lines = [
        "| operation | tokens | MintOnDemand gas/token | NaiveBaseline gas/token | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.operation} | {row.tokens} | {row.ours:,.0f} | {row.baseline:,.0f} | {row.ratio:.1%} |"
        )
    lines += ["", "| target | result | |", "|---|---:|---|"]
    for target in targets:
        lines.append(
            f"| {target.description} | {target.detail} | {'PASS' if target.met else 'FAIL'} |"
        )
    return "\n".join(lines)


def render_document(table: str, env: dict[str, str]) -> str:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    return f"""# Gas benchmark

Gas per token (receipt `gasUsed` / tokens, the 21,000 transaction base included) of
`MintOnDemand` (ERC721A, one storage slot per mint transaction, one bytes32 per batch for seeds and
per token for metadata) against `NaiveBaseline` (OpenZeppelin `ERC721URIStorage`: per-token mint
block, per-token seed, per-token `ipfs://` URI string). Both contracts were compiled in the same run
and deployed on a fresh anvil.

{table}

Workload, identical on both contracts: each measured mint comes from a wallet minting for the first
time (token 1 with quantity 1, tokens 2..11 with quantity 10), then tokens 12..61 are minted in five
transactions of ten; `commitSeeds` of token 1, then of tokens 12..61 in one call; `publish` of token 1,
then of tokens 12..61 in one call (random sha256 digests; the baseline stores the matching CID URI).
The `seed delay 4` rows are a second MintOnDemand deployed with future-block seeds (each token
seeded from the block 4 after its mint), given the same mints, its seed blocks mined, then the same
two commits; their ratio is against the baseline's ordinary seed commit. The `VRF` rows are a
third MintOnDemand seeded by Chainlink VRF v2.5 (Chainlink's `VRFCoordinatorV2_5Mock` from
`@chainlink/contracts`, with a funded subscription): the same mints, then the same two
`commitSeeds`, each one VRF request, and the mock coordinator's fulfilment of each request (its
own bookkeeping included; on a public chain the Chainlink node sends that transaction and the
subscription pays for it, in LINK or native, on top of the committer's gas).

- Date: {today}
- solc: {env["solc"]}
- anvil: {env["anvil"]}

Reproduce:

```
{REPRODUCE}
```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.gas_benchmark", description=__doc__)
    parser.add_argument("--write", type=Path, help="also write the table as markdown to this file")
    options = parser.parse_args(argv)

    rows, targets, env = run_benchmark()
    table = render_table(rows, targets)
    print(table)
    print(f"\nsolc {env['solc']}; anvil {env['anvil']}")
    if options.write is not None:
        options.write.parent.mkdir(parents=True, exist_ok=True)
        # the head of the file: the other benchmarks' sections below it stay
        write_head(options.write, render_document(table, env))
        print(f"wrote {options.write}")
    failed = [target.description for target in targets if not target.met]
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
