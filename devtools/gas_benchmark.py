"""Gas per token of MintOnDemand against a naive OpenZeppelin ERC721URIStorage baseline.

Run ``python -m devtools.gas_benchmark [--write docs/benchmarks.md]`` (``make gas``). In one run it
compiles both contracts fresh with ``node contracts/compile.js --out <tmp>``, starts its own anvil,
deploys both, sends the same operations to each and prints one table of receipt ``gasUsed`` per
token (the 21,000 base cost included), the ratios, and each target of issue 3 with PASS/FAIL. Each
row is also set against its figure before the sales (issue 19), and the sale paths (phases,
allowlist, Dutch auction, refunds, airdrops, withdrawal, PaymentSplit) against what they replace,
measured in the same run; a rise over 10% per token needs a reason in ``REASONS``. Exits non-zero
if a target fails. This is a benchmark, not a timed test: gas is deterministic.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
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

from eth_account import Account
from eth_utils import keccak
from multiformats import CID, multihash
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD

from chain.anvil import ANVIL_ACCOUNTS, AnvilAccount, find_anvil_binary, start_anvil
from chain.contract import VrfSettings, link_bytecode, send_and_wait
from chain.sale_phase import PhaseStruct
from devtools.doc_sections import write_head
from sales.merkle import AllowlistTree

# contracts/ is in the checkout, beside this package (a benchmark compiles the sources fresh)
REPO_ROOT = Path(__file__).resolve().parent.parent
PRICE_WEI = 10**15
MAX_SUPPLY = 1000
REPRODUCE = ".venv/bin/python -m devtools.gas_benchmark --write docs/benchmarks.md  # or: make gas"

ADMIN = ANVIL_ACCOUNTS[0]
# Every measured mint comes from a wallet minting for the first time on that contract, so both
# contracts pay the same zero-to-non-zero balance write; that is a collector's usual mint.
COLLECTORS = ANVIL_ACCOUNTS[1:4]


# docs/benchmarks.md as committed before the sales (33039ad: solc 0.8.37, optimizer runs 10000),
# the figures issue 19 measures every row against: none may rise more than 10% per token without a
# reason stated in REASONS.
BEFORE_SALES: dict[str, float] = {
    "mint q=1": 102_149,
    "mint q=10": 11_949,
    "commitSeeds 1": 54_274,
    "commitSeeds 50 (5x10)": 5_256,
    "publish 1": 53_844,
    "publish 50": 24_230,
    "commitSeeds 1, seed delay 4": 54_369,
    "commitSeeds 50 (5x10), seed delay 4": 5_266,
    "commitSeeds 1, VRF request": 173_656,
    "commitSeeds 50 (5x10), VRF request": 9_774,
    "VRF fulfilment of 1": 102_492,
    "VRF fulfilment of 50 (5x10)": 1_776,
}
REGRESSION_LIMIT = 0.10
# Why a row costs more than +10% per token against before sales (or, for a sale path, against the
# operation it is compared with): what the extra gas buys.
REASONS: dict[str, str] = {
    "mint q=1, fixed-price phase 4 of 4": (
        "the phase lookup reads the times of every phase before the open one, one cold storage"
        " slot (about 2,400 gas) per ended phase; MAX_PHASES (16) bounds it at 15 of them"
    ),
    "mintAllowlisted q=1, 1,000 entries, 10-hash proof": (
        "the Merkle proof: 10 hashes of calldata (320 bytes, about 5,100 gas) and the 12 keccak"
        " hashes that check it, on top of the phase lookup every phase mint pays and the"
        " allowance counted in ERC721A's aux field"
    ),
    "mintAllowlisted q=5, 1,000 entries, 10-hash proof": (
        "the same proof and lookup as q=1, shared by five tokens"
    ),
    "mint q=1, Dutch auction, its first sale": (
        "settlement, as for any auction mint, and the phase's takings (paid, sold, clearing"
        " price: two slots) written from zero once per phase"
    ),
    "mint q=1, Dutch auction": (
        "settlement without a loop over buyers: the buyer's payment and count are stored (a new"
        " slot, 22,100 gas on a wallet's first purchase in the phase) and the phase's takings"
        " updated (two slots), so each buyer later claims its own difference to the clearing"
        " price"
    ),
    "mint q=10, Dutch auction": "the same settlement writes as q=1, shared by ten tokens",
    "withdraw while a Dutch auction runs": (
        "withdraw keeps back what auction buyers may still claim: SaleRules.refundsOwed reads"
        " each scheduled phase and an auction's takings (a few cold slots per phase, at most 16"
        " phases)"
    ),
    "withdraw after a Dutch auction": "the same refundsOwed pass as while it runs",
}


@dataclass(frozen=True)
class Row:
    """One operation's gas per token (``tokens`` None: one call, not divided), with the
    baseline's where it does the same thing and the figure before sales where there was one."""

    operation: str
    tokens: int | None
    ours: float
    baseline: float | None = None
    before: float | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.baseline is None else self.ours / self.baseline

    @property
    def change(self) -> float | None:
        return None if self.before is None else self.ours / self.before - 1


@dataclass(frozen=True)
class Comparison:
    """A sale path against what a collector or the admin did before it, measured in the same run:
    a phase's mint against the unphased mint of the same quantity, an airdrop against the
    same tokens minted by `mint`."""

    operation: str
    reference: str
    ours: float
    reference_gas: float

    @property
    def change(self) -> float:
        return self.ours / self.reference_gas - 1


def _ratio(row: Row) -> float:
    if row.ratio is None:
        raise ValueError(f"{row.operation} has no baseline figure")
    return row.ratio


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
        for name in (
            "MintOnDemand",
            "SaleRules",
            "PaymentSplit",
            "NaiveBaseline",
            "VRFCoordinatorV2_5Mock",
        )
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


# ---------------------------------------------------------------- sales (issue 19)

PHASE_OPEN = 10**6  # seconds a measured phase stays open: its end never comes into play
ALLOWLIST_SIZE = 1_000
AUCTION_STEP = 60  # a Dutch auction falling 0.1 PRICE_WEI a minute from 2 PRICE_WEI to PRICE_WEI
AUCTION_LENGTH = 3_600


# A phase at the base price unless told otherwise (a fixed price's floor is its price)
Phase = functools.partial(PhaseStruct.of, price=PRICE_WEI)


@dataclass(frozen=True)
class SaleMeasure:
    """A sale path's gas: per token over ``tokens`` (None: the whole call), and the operation it
    is compared with in the same run, if any."""

    operation: str
    tokens: int | None
    gas: float
    reference: str | None = None
    reference_only: bool = False  # measured only as another path's reference, not a table row


def _wallets(w3: Web3, label: str, n: int) -> list[AnvilAccount]:
    """``n`` funded wallets that have never minted, from fixed keys: the same addresses every run,
    so the calldata and the Merkle proofs that hold them cost the same gas every run."""
    wallets = []
    for i in range(n):
        account = Account.from_key(keccak(text=f"gas benchmark {label} {i}"))
        w3.provider.make_request("anvil_setBalance", [account.address, hex(10**22)])
        wallets.append(AnvilAccount(account.address, account.key.to_0x_hex()))
    return wallets


def _at(w3: Web3, timestamp: int) -> None:
    """Mine a block at ``timestamp``: the next transaction runs a second or so later."""
    w3.provider.make_request("evm_mine", [timestamp])


def _soon(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"]) + 100


def _schedule(w3: Web3, contract: Contract, *phases: PhaseStruct) -> None:
    """Schedule ``phases`` as phases 0.. and move time to the first one's start."""
    for phase_id, phase in enumerate(phases):
        send_and_wait(w3, ADMIN.private_key, contract.functions.setPhase(phase_id, tuple(phase)))
    _at(w3, phases[0].start)


def measure_sales(
    w3: Web3, collection: Callable[..., Contract], split: Contract, payees: list[AnvilAccount]
) -> list[SaleMeasure]:
    """Each sale path on its own fresh collection (``collection(**init)`` deploys one with the
    config frozen), every mint from a wallet minting there for the first time, in the phase 0 of
    its collection unless named otherwise."""
    out: list[SaleMeasure] = []

    def mints(contract: Contract, label: str, *quantities: int) -> None:
        """Each quantity minted at the fixed price by a wallet of its own."""
        for quantity, wallet in zip(quantities, _wallets(w3, label, len(quantities)), strict=True):
            gas = _gas(w3, contract.functions.mint(quantity), wallet, quantity * PRICE_WEI)
            name = f"mint q={quantity}, {label}"
            out.append(SaleMeasure(name, quantity, gas / quantity, f"mint q={quantity}"))

    # Fixed price, open to anyone: no cap, then a per-wallet cap (counted in ERC721A's aux field)
    fixed = collection()
    t0 = _soon(w3)
    _schedule(w3, fixed, Phase(t0, t0 + PHASE_OPEN))
    mints(fixed, "fixed-price phase", 1, 10)
    capped = collection()
    t0 = _soon(w3)
    _schedule(w3, capped, Phase(t0, t0 + PHASE_OPEN, max_per_wallet=10))
    mints(capped, "fixed-price phase, wallet cap 10", 1, 10)
    # The fourth phase, three having ended: the lookup reads each earlier phase's times
    late = collection()
    t0 = _soon(w3)
    ended = [Phase(t0 + 10 * i, t0 + 10 * (i + 1)) for i in range(3)]
    _schedule(w3, late, *ended, Phase(t0 + 30, t0 + PHASE_OPEN))
    _at(w3, t0 + 30)
    mints(late, "fixed-price phase 4 of 4", 1)

    # An allowlist of 1,000 (address, allowance) entries; the unphased mint q=5 first, for reference
    listed = collection()
    reference, first, second = _wallets(w3, "allowlist", 3)
    gas = _gas(w3, listed.functions.mint(5), reference, 5 * PRICE_WEI) / 5
    out.append(SaleMeasure("mint q=5", 5, gas, reference_only=True))
    entries = [
        ("0x" + keccak(text=f"allowlist entry {i}")[:20].hex(), 1 + i % 5)
        for i in range(ALLOWLIST_SIZE - 2)
    ] + [(first.address, 5), (second.address, 5)]
    tree = AllowlistTree.of(entries)
    t0 = _soon(w3)
    _schedule(w3, listed, Phase(t0, t0 + PHASE_OPEN, merkle_root=bytes.fromhex(tree.root[2:])))
    for wallet, quantity in ((first, 1), (second, 5)):
        proof = [bytes.fromhex(node[2:]) for node in tree.get_proof(wallet.address)]
        fn = listed.functions.mintAllowlisted(quantity, 5, proof)
        gas = _gas(w3, fn, wallet, quantity * PRICE_WEI) / quantity
        name = f"mintAllowlisted q={quantity}, 1,000 entries, {len(proof)}-hash proof"
        out.append(SaleMeasure(name, quantity, gas, f"mint q={quantity}"))

    # Proceeds withdrawn to the split: first from a sale with no phase, what `withdraw` did
    # before sales (it now also asks SaleRules what auction buyers are owed: nothing here)
    plain = collection(payee=split.address)
    send_and_wait(w3, ADMIN.private_key, plain.functions.mint(1), PRICE_WEI)
    gas = _gas(w3, plain.functions.withdraw(), ADMIN)
    out.append(SaleMeasure("withdraw, no phase scheduled", None, gas))

    # A settled Dutch auction whose proceeds go to the split; every buyer pays the start price
    # (the excess over the clearing price is theirs to claim back)
    auction = collection(payee=split.address)
    t0 = _soon(w3)
    drop = PRICE_WEI // 10
    _schedule(
        w3,
        auction,
        Phase(
            t0,
            t0 + AUCTION_LENGTH,
            step_seconds=AUCTION_STEP,
            price=2 * PRICE_WEI,
            floor_price=PRICE_WEI,
            drop_per_step=drop,
        ),
    )
    f = auction.functions
    opener, buyer, bulk = _wallets(w3, "auction", 3)
    gas = _gas(w3, f.mint(1), opener, 2 * PRICE_WEI)
    out.append(SaleMeasure("mint q=1, Dutch auction, its first sale", 1, gas, "mint q=1"))
    _at(w3, t0 + 2 * AUCTION_STEP)
    gas = _gas(w3, f.mint(1), buyer, 2 * PRICE_WEI)
    out.append(SaleMeasure("mint q=1, Dutch auction", 1, gas, "mint q=1"))
    _at(w3, t0 + 4 * AUCTION_STEP)
    gas = _gas(w3, f.mint(10), bulk, 20 * PRICE_WEI) / 10
    out.append(SaleMeasure("mint q=10, Dutch auction", 10, gas, "mint q=10"))
    _at(w3, t0 + 5 * AUCTION_STEP)
    plain_withdraw = "withdraw, no phase scheduled"
    gas = _gas(w3, f.withdraw(), ADMIN)
    out.append(SaleMeasure("withdraw while a Dutch auction runs", None, gas, plain_withdraw))
    _at(w3, t0 + AUCTION_LENGTH)
    gas = _gas(w3, f.withdraw(), ADMIN)
    out.append(SaleMeasure("withdraw after a Dutch auction", None, gas, plain_withdraw))
    out.append(SaleMeasure("claimRefund", None, _gas(w3, f.claimRefund(0), buyer)))

    # The creator reserve: one batch of 10 to one recipient, then one token to each of 10
    reserved = collection(reserve=20)
    recipients = [
        Web3.to_checksum_address(keccak(text=f"airdrop recipient {i}")[:20]) for i in range(11)
    ]
    fn = reserved.functions.airdrop(recipients[:1], [10])
    out.append(SaleMeasure("airdrop, 1 recipient of 10", 10, _gas(w3, fn, ADMIN) / 10, "mint q=10"))
    fn = reserved.functions.airdrop(recipients[1:], [1] * 10)
    out.append(SaleMeasure("airdrop, 10 recipients of 1", 10, _gas(w3, fn, ADMIN) / 10, "mint q=1"))

    # The split's payees pull their shares of the auction's proceeds
    for label, payee in zip(("first", "second"), payees, strict=True):
        gas = _gas(w3, split.functions.release(payee.address), payee)
        out.append(SaleMeasure(f"PaymentSplit release, {label} payee", None, gas))
    return out


def _init(
    seed_delay: int,
    vrf: VrfSettings | None = None,
    *,
    reserve: int = 0,
    payee: str = ADMIN.address,
) -> tuple[Any, ...]:
    """MintOnDemand's InitConfig for the benchmark."""
    return (
        "Bench",
        "BEN",
        PRICE_WEI,
        MAX_SUPPLY,
        20,
        0,
        reserve,
        ADMIN.address,
        payee,
        ADMIN.address,
        500,
        "ipfs://placeholder",
        seed_delay,
        (vrf or VrfSettings()).as_tuple(),
    )


@dataclass(frozen=True)
class Results:
    rows: list[Row]
    comparisons: list[Comparison]
    targets: list[Target]
    env: dict[str, str]


def run_benchmark() -> Results:
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

        def collection(**init: Any) -> Contract:
            contract = _deploy(w3, artifacts["MintOnDemand"], _init(0, **init), libraries=rules)
            send_and_wait(
                w3, ADMIN.private_key, contract.functions.freezeConfig(b"\x01" * 32, "ipfs://c")
            )
            return contract

        # the split's payees (70% and 30%) hold ether already, as a studio's payees do
        payees = _wallets(w3, "payee", 2)
        split = _deploy(w3, artifacts["PaymentSplit"], [p.address for p in payees], [7_000, 3_000])
        sales = measure_sales(w3, collection, split, payees)

    tokens = {"1": 1, "q=1": 1, "q=10": 10, "50": 50, "(5x10)": 50}
    rows = [
        Row(op, tokens[op.split()[-1]], ours_gas[op], baseline_gas[op], BEFORE_SALES.get(op))
        for op in ours_gas
    ]
    for op, gas in (future_gas | vrf_gas).items():  # against the baseline's seed commit
        same = op.split(",")[0].replace("VRF fulfilment of", "commitSeeds")
        rows.append(Row(op, tokens[same.split()[-1]], gas, baseline_gas[same], BEFORE_SALES[op]))
    # NaiveBaseline has no phases, allowlists, auctions, reserve, withdrawal or split: no ratio
    rows += [Row(m.operation, m.tokens, m.gas) for m in sales if not m.reference_only]
    references = ours_gas | {m.operation: m.gas for m in sales}
    comparisons = [
        Comparison(m.operation, m.reference, m.gas, references[m.reference])
        for m in sales
        if m.reference is not None
    ]
    over = [row.operation for row in rows if (row.change or 0) > REGRESSION_LIMIT]
    over += [c.operation for c in comparisons if c.change > REGRESSION_LIMIT]
    unexplained = [op for op in over if op not in REASONS]
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
            _ratio(publish50) < 0.5,
            f"{_ratio(publish50):.1%}",
        ),
        Target(
            "seed commit, 50 tokens minted in 5 tx of 10: <= 12,000 gas/token",
            commit50.ours <= 12_000,
            f"{commit50.ours:,.0f}",
        ),
        Target(
            "mint, quantity 10: <= 60% of baseline per token",
            _ratio(mint10) <= 0.6,
            f"{_ratio(mint10):.1%}",
        ),
        Target(
            "no row over +10% per token against before sales without a stated reason",
            not unexplained,
            f"{len(over)} over, {len(unexplained)} unexplained",
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
    return Results(rows, comparisons, targets, env)


def _gas_cell(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _share_cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def render_table(results: Results) -> str:
    lines = [
        "| operation | tokens | MintOnDemand gas/token | before sales | change | NaiveBaseline gas/token | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results.rows:
        tokens = "per call" if row.tokens is None else str(row.tokens)
        lines.append(
            f"| {row.operation} | {tokens} | {row.ours:,.0f} | {_gas_cell(row.before)} "
            f"| {_share_cell(row.change, signed=True)} | {_gas_cell(row.baseline)} "
            f"| {_share_cell(row.ratio)} |"
        )
    lines += [
        "",
        "| sale path | gas per token (or call) | compared with, same run | its gas | change |",
        "|---|---:|---|---:|---:|",
    ]
    for c in results.comparisons:
        lines.append(
            f"| {c.operation} | {c.ours:,.0f} | {c.reference} | {c.reference_gas:,.0f} "
            f"| {c.change:+.1%} |"
        )
    changes = {row.operation: row.change or 0 for row in results.rows}
    changes |= {c.operation: c.change for c in results.comparisons}
    over = [(op, change) for op, change in changes.items() if change > REGRESSION_LIMIT]
    if over:
        lines += ["", f"Over +{REGRESSION_LIMIT:.0%} per token, and why:", ""]
        for op, change in over:
            lines.append(f"- {op} ({change:+.1%}): {REASONS.get(op, '**no reason stated**')}")
    lines += ["", "| target | result | |", "|---|---:|---|"]
    for target in results.targets:
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
and deployed on a fresh anvil. `before sales` is the figure committed before the contract had sale
phases (33039ad: optimizer runs 10000; `SaleRules` and runs 1000 came with the sales, to stay under
EIP-170); no row may rise more than 10% per token against it without a reason stated below the
tables. The sale paths, which had no figure before, are compared in the second table with the call
they stand in for (the unphased mint of the same quantity, a withdrawal with no phase), measured
in this same run. `NaiveBaseline` has no phases, allowlists, auctions, reserve, withdrawal or
split: those rows have no ratio.

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

Sale paths (issue 19), each on a fresh MintOnDemand (same config, linked to the same `SaleRules`),
every mint from a wallet minting there for the first time, in the collection's only phase unless
named otherwise, open from its start for {PHASE_OPEN:,} s: a fixed-price phase open to anyone,
without and with a per-wallet cap (10); the fourth of four phases, three having ended; an
allowlist phase whose Merkle root is a {ALLOWLIST_SIZE:,}-entry StandardMerkleTree of (address,
allowance) (fixed filler addresses and the two measured wallets, allowance 5; both proofs are 10
hashes; `mint q=5` is an unphased mint on that collection before its phase, for reference); a
Dutch auction from 2 to 1 times the price, falling a tenth of the price every
{AUCTION_STEP} s for {AUCTION_LENGTH:,} s, each buyer paying the start price (its first sale,
then q=1 two steps in and q=10 four steps in), `withdraw` five steps in and again at its end, then
`claimRefund` by the q=1 buyer; `withdraw, no phase scheduled` on a collection that sold one token
without phases. Every `withdraw` pays a `PaymentSplit` of two payees (70/30), whose `release` to
each is then measured (the first payee's release also writes the split's total from zero). The
`airdrop` rows mint from a reserve of 20: 10 tokens to one new address, then one to each of 10
new addresses. `per call` rows are the whole transaction.

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

    results = run_benchmark()
    table = render_table(results)
    env = results.env
    print(table)
    print(f"\nsolc {env['solc']}; anvil {env['anvil']}")
    if options.write is not None:
        options.write.parent.mkdir(parents=True, exist_ok=True)
        # the head of the file: the other benchmarks' sections below it stay
        write_head(options.write, render_document(table, env))
        print(f"wrote {options.write}")
    failed = [target.description for target in results.targets if not target.met]
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
