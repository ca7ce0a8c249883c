"""MintOnDemand's sales on a real anvil: scheduled phases, Merkle allowlists, a settled Dutch
auction, the creator reserve and its airdrops, and a PaymentSplit taking proceeds and royalties.

Personas as in test_contract.py: Ada operates the collection, Colin and Dora collect, Mallory
holds no role and is on no list, Paula is a payee. Time moves by mining blocks at chosen
timestamps, so every phase boundary is exact.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from chain.anvil import ANVIL_ACCOUNTS, Anvil, AnvilAccount, start_anvil
from chain.contract import bind_split, deploy_contract, deploy_split
from chain.sale_phase import PhaseStruct
from sales.merkle import AllowlistTree
from tests.test_contract import (
    CONFIG_DIGEST,
    CONTRACT_URI,
    decode_error,
    expected_seed,
    mine,
    revert_of,
    transact,
)

ADA, COLIN, MALLORY, PAULA, DORA = ANVIL_ACCOUNTS[:5]
PRICE = Web3.to_wei(0.01, "ether")
ZERO = "0x" + "00" * 20


# A phase at the base price unless told otherwise (a fixed price's floor is its price)
Phase = functools.partial(PhaseStruct.of, price=PRICE)


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with start_anvil() as node:
        yield node


@pytest.fixture(scope="module")
def w3(anvil: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.rpc_url))


def deploy(w3: Web3, **overrides: Any) -> Contract:
    options: dict[str, Any] = {
        "name": "Dreams",
        "symbol": "DRM",
        "price_wei": PRICE,
        "max_supply": 12,
        "max_per_tx": 5,
        "payee": PAULA.address,
    }
    address, _ = deploy_contract(w3, ADA.private_key, **(options | overrides))
    contract = w3.eth.contract(address=address, abi=bind_abi())
    transact(w3, contract.functions.freezeConfig(CONFIG_DIGEST, CONTRACT_URI), ADA)
    return contract


def bind_abi() -> list[dict[str, Any]]:
    from chain.contract import contract_abi

    return contract_abi()


def now(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def at(w3: Web3, timestamp: int) -> None:
    """Mine a block at ``timestamp``: calls now see that time, the next transaction a second on."""
    w3.provider.make_request("evm_mine", [timestamp])  # type: ignore[list-item]


def schedule(w3: Web3, contract: Contract, *phases: PhaseStruct) -> None:
    for phase_id, phase in enumerate(phases):
        transact(w3, contract.functions.setPhase(phase_id, tuple(phase)), ADA)


def buy(
    w3: Web3, contract: Contract, quantity: int, who: AnvilAccount, value: int
) -> dict[str, Any]:
    return dict(transact(w3, contract.functions.mint(quantity), who, value=value))


def balance(w3: Web3, address: str) -> int:
    return int(w3.eth.get_balance(Web3.to_checksum_address(address)))


def selector(signature: str) -> bytes:
    return bytes(Web3.keccak(text=signature)[:4])


def split_revert(fn: Any) -> tuple[str, str | None]:
    """The PaymentSplit error ``fn`` reverts with now: its name and address argument, if any."""
    with pytest.raises(ContractCustomError) as info:
        fn.call({"from": MALLORY.address})
    data = bytes.fromhex(str(info.value.data).removeprefix("0x"))
    for name in ("NothingToRelease(address)", "FailedCall()", "InvalidSplit()"):
        if data[:4] == selector(name):
            argument = "0x" + data[-20:].hex() if len(data) > 4 else None
            return name.split("(")[0], argument
    raise AssertionError(f"unexpected revert data {data.hex()}")


def paid_gas(receipt: dict[str, Any]) -> int:
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


# ---------------------------------------------------------------- phases and allowlists


def test_a_launch_runs_allowlist_then_public_each_with_its_price_and_limit(w3: Web3) -> None:
    contract = deploy(w3)
    f = contract.functions
    tree = AllowlistTree.of([(COLIN.address, 2), (DORA.address, 1)])
    root = bytes.fromhex(tree.root.removeprefix("0x"))
    t0 = now(w3) + 100
    allowlist = Phase(t0, t0 + 100, price=2 * PRICE, floor_price=2 * PRICE, merkle_root=root)
    public = Phase(t0 + 100, t0 + 200, max_per_wallet=2, price=3 * PRICE, floor_price=3 * PRICE)
    schedule(w3, contract, allowlist, public)
    assert f.phaseCount().call() == 2
    assert f.scheduledPhase(0).call() == tuple(allowlist)

    # Before the first phase: closed, and the error says when it opens
    assert revert_of(f.mint(1), COLIN, PRICE) == ("SaleNotOpen", (t0,))
    assert f.currentPhase().call() == [False, 0]

    # The allowlist phase: only proven addresses, each up to its allowance
    at(w3, t0)
    assert f.currentPhase().call() == [True, 0]
    assert f.price().call() == 2 * PRICE
    assert revert_of(f.mint(1), COLIN, 2 * PRICE) == ("AllowlistRequired", (0,))
    colin_proof = [bytes.fromhex(p[2:]) for p in tree.get_proof(COLIN.address)]
    transact(w3, f.mintAllowlisted(1, 2, colin_proof), COLIN, value=2 * PRICE)
    assert f.mintedInPhase(0, COLIN.address).call() == 1
    assert revert_of(f.mintAllowlisted(2, 2, colin_proof), COLIN, 4 * PRICE) == (
        "PhaseCapExceeded",
        (0, 2, 1),
    )
    # a stranger with Colin's proof, and Colin claiming a larger allowance, are both refused
    assert revert_of(f.mintAllowlisted(1, 2, colin_proof), MALLORY, 2 * PRICE) == (
        "NotAllowlisted",
        (MALLORY.address.lower(), 0),
    )
    assert revert_of(f.mintAllowlisted(1, 3, colin_proof), COLIN, 2 * PRICE)[0] == "NotAllowlisted"
    assert revert_of(f.mintAllowlisted(1, 2, colin_proof), COLIN, PRICE) == (
        "WrongPayment",
        (PRICE, 2 * PRICE),
    )

    # The public phase: anyone, at its own price, up to its per-wallet limit
    at(w3, t0 + 100)
    assert f.price().call() == 3 * PRICE
    assert revert_of(f.mintAllowlisted(1, 2, colin_proof), COLIN, 3 * PRICE) == (
        "NoAllowlistPhase",
        (),
    )
    assert revert_of(f.mint(3), MALLORY, 9 * PRICE) == ("PhaseCapExceeded", (1, 3, 2))
    buy(w3, contract, 2, MALLORY, 6 * PRICE)
    assert revert_of(f.mint(1), MALLORY, 3 * PRICE) == ("PhaseCapExceeded", (1, 1, 0))
    # Colin's allowlist tokens do not count against the public phase's limit
    buy(w3, contract, 2, COLIN, 6 * PRICE)
    assert [f.mintedInPhase(1, a.address).call() for a in (COLIN, MALLORY)] == [2, 2]

    # After the last phase the sale is over, whatever the base price
    at(w3, t0 + 200)
    assert revert_of(f.mint(1), DORA, PRICE) == ("SaleNotOpen", (0,))
    assert f.totalSupply().call() == 5
    assert balance(w3, contract.address) == 2 * PRICE + 12 * PRICE


def test_pausing_stops_every_sale_path(w3: Web3) -> None:
    contract = deploy(w3)
    f = contract.functions
    tree = AllowlistTree.of([(COLIN.address, 1)])
    t0 = now(w3) + 10
    phase = Phase(t0, t0 + 100, merkle_root=bytes.fromhex(tree.root[2:]))
    schedule(w3, contract, phase)
    at(w3, t0)
    transact(w3, f.pause(), ADA)
    proof = [bytes.fromhex(p[2:]) for p in tree.get_proof(COLIN.address)]
    assert revert_of(f.mintAllowlisted(1, 1, proof), COLIN, PRICE) == ("EnforcedPause", ())
    transact(w3, f.unpause(), ADA)
    transact(w3, f.mintAllowlisted(1, 1, proof), COLIN, value=PRICE)


def test_the_admin_schedules_phases_only_in_order_and_before_they_start(w3: Web3) -> None:
    contract = deploy(w3)
    f = contract.functions
    t0 = now(w3) + 1_000
    first = Phase(t0, t0 + 100)
    schedule(w3, contract, first, Phase(t0 + 100, t0 + 200))

    def refused(phase_id: int, phase: PhaseStruct) -> tuple[str, tuple[Any, ...]]:
        return revert_of(f.setPhase(phase_id, tuple(phase)), ADA)

    assert refused(3, first) == ("UnknownPhase", (3,))
    assert refused(2, Phase(t0 + 300, t0 + 300)) == ("InvalidPhaseTimes", (2,))
    assert refused(2, Phase(t0 - 2_000, t0 - 1_500)) == ("InvalidPhaseTimes", (2,))
    assert refused(2, Phase(t0 + 150, t0 + 300)) == ("PhaseOutOfOrder", (2,))
    assert refused(0, Phase(t0, t0 + 150)) == ("PhaseOutOfOrder", (0,))
    assert refused(2, Phase(t0 + 300, t0 + 400, floor_price=PRICE - 1)) == (
        "InvalidPhasePrice",
        (2,),
    )
    assert refused(2, Phase(t0 + 300, t0 + 400, drop_per_step=1)) == ("InvalidPhasePrice", (2,))
    auction = Phase(t0 + 300, t0 + 400, step_seconds=10, price=2 * PRICE, floor_price=PRICE)
    assert refused(2, auction) == ("InvalidPhasePrice", (2,))  # no drop
    assert refused(2, auction._replace(drop_per_step=1, floor_price=3 * PRICE)) == (
        "InvalidPhasePrice",
        (2,),
    )
    assert revert_of(f.setPhase(2, tuple(first)), MALLORY)[0] == "AccessControlUnauthorizedAccount"
    assert revert_of(f.scheduledPhase(2), ADA) == ("UnknownPhase", (2,))

    # A phase not started can be replaced or dropped; a started one cannot
    receipt = transact(w3, f.setPhase(0, tuple(first._replace(price=5, floor_price=5))), ADA)
    (event,) = contract.events.PhaseSet().process_receipt(receipt, errors=DISCARD)
    assert event.args["phaseId"] == 0 and event.args["phase"]["price"] == 5
    receipt = transact(w3, f.dropLastPhase(), ADA)
    (dropped,) = contract.events.PhaseDropped().process_receipt(receipt, errors=DISCARD)
    assert dropped.args["phaseId"] == 1
    assert f.phaseCount().call() == 1
    at(w3, t0)
    assert refused(0, first) == ("PhaseStarted", (0,))
    assert revert_of(f.dropLastPhase(), ADA) == ("PhaseStarted", (0,))
    for phase_id in range(1, 16):
        transact(
            w3,
            f.setPhase(phase_id, tuple(Phase(t0 + 100 * phase_id, t0 + 100 * phase_id + 1))),
            ADA,
        )
    assert refused(16, Phase(t0 + 5_000, t0 + 5_001)) == ("TooManyPhases", ())


def test_drop_last_phase_needs_a_phase(w3: Web3) -> None:
    contract = deploy(w3)
    assert revert_of(contract.functions.dropLastPhase(), ADA) == ("UnknownPhase", (0,))


# ---------------------------------------------------------------- Dutch auction with settlement


def test_a_dutch_auction_settles_every_buyer_at_the_clearing_price(w3: Web3) -> None:
    contract = deploy(w3)
    f = contract.functions
    t0 = now(w3) + 100
    # 10 PRICE falling by 2 PRICE every 100 s to a floor of 2 PRICE; 600 s long
    auction = Phase(
        t0, t0 + 600, step_seconds=100, price=10 * PRICE, floor_price=2 * PRICE,
        drop_per_step=2 * PRICE, max_per_wallet=3,
    )  # fmt: skip
    schedule(w3, contract, auction)
    at(w3, t0 + 10)
    assert f.price().call() == 10 * PRICE
    buy(w3, contract, 1, COLIN, 10 * PRICE)
    at(w3, t0 + 250)  # two steps down
    assert f.price().call() == 6 * PRICE
    assert revert_of(f.mint(2), DORA, 12 * PRICE - 1) == (
        "WrongPayment",
        (12 * PRICE - 1, 12 * PRICE),
    )
    buy(w3, contract, 2, DORA, 12 * PRICE + 7)  # a wei-exact price is not needed: 7 wei over
    assert revert_of(f.mint(3), DORA, 18 * PRICE) == ("PhaseCapExceeded", (0, 3, 1))
    assert f.mintedInPhase(0, DORA.address).call() == 2
    at(w3, t0 + 550)
    assert f.price().call() == 2 * PRICE  # the floor, never below

    # While it runs, no refund, and the payee takes only what the floor guarantees
    assert revert_of(f.claimRefund(0), COLIN) == ("AuctionNotEnded", (0, t0 + 600))
    paid = 22 * PRICE + 7
    assert f.withdrawable().call() == 3 * 2 * PRICE
    assert f.auctionSales(0).call() == (paid, 0, 6 * PRICE, 3)

    # Once it ends, everyone pays the last sale's price (6 PRICE) and claims the rest
    at(w3, t0 + 600)
    assert f.refundOf(0, COLIN.address).call() == 4 * PRICE
    assert f.refundOf(0, DORA.address).call() == 7
    assert f.withdrawable().call() == 18 * PRICE
    before = balance(w3, COLIN.address)
    receipt = transact(w3, f.claimRefund(0), COLIN)
    assert balance(w3, COLIN.address) == before + 4 * PRICE - paid_gas(dict(receipt))
    (claimed,) = contract.events.RefundClaimed().process_receipt(receipt, errors=DISCARD)
    assert dict(claimed.args) == {"phaseId": 0, "buyer": COLIN.address, "amount": 4 * PRICE}
    assert revert_of(f.claimRefund(0), COLIN) == ("NothingToClaim", (COLIN.address.lower(),))
    assert revert_of(f.claimRefund(0), MALLORY) == ("NothingToClaim", (MALLORY.address.lower(),))

    # The payee's withdrawal never touches Dora's unclaimed 7 wei
    transact(w3, f.withdraw(), ADA)
    assert balance(w3, contract.address) == 7
    assert revert_of(f.withdraw(), ADA) == ("NothingToWithdraw", ())
    transact(w3, f.claimRefund(0), DORA)
    assert balance(w3, contract.address) == 0


def test_an_auction_that_sells_out_settles_before_its_end(w3: Web3) -> None:
    contract = deploy(w3, max_supply=3)
    f = contract.functions
    t0 = now(w3) + 100
    auction = Phase(t0, t0 + 10_000, step_seconds=100, price=5 * PRICE, floor_price=PRICE,
                    drop_per_step=PRICE)  # fmt: skip
    schedule(w3, contract, auction)
    at(w3, t0)
    buy(w3, contract, 1, COLIN, 5 * PRICE)
    at(w3, t0 + 150)
    buy(w3, contract, 2, DORA, 8 * PRICE)
    assert f.saleRemaining().call() == 0
    transact(w3, f.claimRefund(0), COLIN)  # 5 - 4
    assert f.withdrawable().call() == 12 * PRICE
    assert revert_of(f.claimRefund(1), COLIN) == ("NotAnAuction", (1,))


def sale_rules_js(phases: list[dict[str, Any]], times: list[int]) -> list[dict[str, Any]]:
    """What the mint page's script makes of ``phases`` (their page documents) at each of
    ``times``: mintsite/static/mintsite/sale_rules.js under node (tests/sale_rules_probe.js)."""
    node = shutil.which("node")
    assert node, "node runs the mint page's sale rules"
    done = subprocess.run(
        [node, str(Path(__file__).parent / "sale_rules_probe.js")],
        input=json.dumps({"phases": phases, "times": times}),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_mint_pages_reading_of_the_sale_agrees_with_the_contract_at_every_boundary(
    w3: Web3,
) -> None:
    # The page names the open phase and its price from its own copies of the contract's rules:
    # the server's (mintsite/pages/sale.py) and the script's (sale_rules.js, which says it again
    # every second). Here all three read the same chain at each edge of each rule.
    from mintsite.pages.sale import read_sale

    contract = deploy(w3)
    f = contract.functions
    t0 = now(w3) + 100
    auction = Phase(t0, t0 + 600, step_seconds=60, price=5 * PRICE, floor_price=2 * PRICE,
                    drop_per_step=PRICE)  # fmt: skip
    listed = Phase(t0 + 1000, t0 + 2000, price=2 * PRICE, floor_price=2 * PRICE,
                   merkle_root=b"\xab" * 32)  # fmt: skip
    schedule(w3, contract, auction, listed)
    edges = [-1, 0, 1, 59, 60, 119, 120, 180, 240, 599, 600, 999, 1000, 1999, 2000, 2500]
    script = sale_rules_js(
        [p.document() for p in read_sale(w3, contract).phases], [t0 + e for e in edges]
    )
    states, prices = set(), set()
    for offset, in_script in zip(edges, script, strict=True):
        at(w3, t0 + offset)
        sale = read_sale(w3, contract)
        assert sale.chain_time == t0 + offset
        phase = sale.open_phase
        page = (phase is not None, phase.id if phase else 0)
        assert page == tuple(f.currentPhase().call()), f"at t0{offset:+d}"
        listed_phase = phase or sale.next_phase
        assert in_script == {
            "state": sale.state,
            "id": listed_phase.id if listed_phase else None,
            "price": str(f.price().call()) if phase else None,
            "title": listed_phase.title if listed_phase else None,
        }, f"at t0{offset:+d}"
        if phase is not None:
            assert phase.price_at(sale.chain_time) == f.price().call(), f"at t0{offset:+d}"
            prices.add(phase.price_at(sale.chain_time))
        states.add(sale.state)
    # every state and every step of the auction's price was met
    assert states == {"upcoming", "open", "over"}
    assert prices == {5 * PRICE, 4 * PRICE, 3 * PRICE, 2 * PRICE}


# ---------------------------------------------------------------- creator reserve


def test_the_reserve_is_kept_out_of_the_sale_and_airdropped_by_the_admin(w3: Web3) -> None:
    contract = deploy(w3, max_supply=6, reserve=3)
    f = contract.functions
    assert f.reserve().call() == [3, 0]
    assert f.saleRemaining().call() == 3
    assert revert_of(f.mint(4), COLIN, 4 * PRICE) == ("SoldOut", (4, 3))
    buy(w3, contract, 3, COLIN, 3 * PRICE)
    assert revert_of(f.mint(1), COLIN, PRICE) == ("SoldOut", (1, 0))

    a = f.airdrop
    assert revert_of(a([DORA.address], [1, 1]), ADA) == ("LengthMismatch", ())
    assert revert_of(a([ZERO], [1]), ADA) == ("ZeroAddress", ())
    assert revert_of(a([DORA.address], [0]), ADA) == ("ZeroQuantity", ())
    assert revert_of(a([DORA.address], [6]), ADA) == ("TooManyPerTransaction", (6, 5))
    assert revert_of(a([DORA.address, PAULA.address], [2, 2]), ADA) == ("ReserveExceeded", (4, 3))
    assert revert_of(a([DORA.address], [1]), MALLORY)[0] == "AccessControlUnauthorizedAccount"

    transact(w3, f.pause(), ADA)  # an airdrop does not wait for the sale to reopen
    receipt = transact(w3, a([DORA.address, PAULA.address], [2, 1]), ADA)
    dropped = contract.events.ReserveMinted().process_receipt(receipt, errors=DISCARD)
    assert [tuple(e.args.values()) for e in dropped] == [
        (DORA.address, 4, 2),
        (PAULA.address, 6, 1),
    ]
    assert [f.ownerOf(i).call() for i in (4, 5, 6)] == [DORA.address, DORA.address, PAULA.address]
    assert f.reserve().call() == [3, 3]
    assert revert_of(a([DORA.address], [1]), ADA) == ("ReserveExceeded", (1, 0))

    # Airdropped tokens are batches like bought ones: their seeds come the same way
    mine(w3)
    receipt = transact(w3, f.commitSeeds([4, 6]), MALLORY)
    block = int(receipt["blockNumber"]) - 1
    mint_block = f.mintBlockOf(4).call()
    assert mint_block <= block
    assert f.seedOf(5).call() == expected_seed(w3, mint_block, 5)
    assert f.seedOf(6).call() == expected_seed(w3, f.mintBlockOf(6).call(), 6)


def test_a_reserve_larger_than_the_supply_is_refused(w3: Web3) -> None:
    with pytest.raises(ContractCustomError) as info:
        deploy_contract(w3, ADA.private_key, name="X", symbol="X", price_wei=1, max_supply=2,
                        reserve=3)  # fmt: skip
    assert decode_error(bytes.fromhex(str(info.value.data)[2:])) == ("InvalidMintLimits", ())


def test_an_unfrozen_collection_airdrops_nothing(w3: Web3) -> None:
    address, _ = deploy_contract(w3, ADA.private_key, name="X", symbol="X", price_wei=1,
                                 max_supply=2, reserve=1)  # fmt: skip
    contract = w3.eth.contract(address=address, abi=bind_abi())
    assert revert_of(contract.functions.airdrop([DORA.address], [1]), ADA) == (
        "ConfigNotFrozen",
        (),
    )


# ---------------------------------------------------------------- payment split


def test_proceeds_and_royalties_are_split_and_each_payee_pulls_its_share(w3: Web3) -> None:
    contract = deploy(w3, payee=None, splits=[(PAULA.address, 7_000), (DORA.address, 3_000)])
    f = contract.functions
    split = bind_split(w3, f.payee().call())
    assert split.functions.split().call() == [[PAULA.address, DORA.address], [7_000, 3_000]]
    # royalties point at the split too
    assert f.royaltyInfo(1, 10_000).call() == [split.address, 500]

    buy(w3, contract, 3, COLIN, 3 * PRICE)
    transact(w3, f.withdraw(), ADA)
    royalty = w3.eth.send_transaction(
        {"from": MALLORY.address, "to": split.address, "value": PRICE}
    )
    (received,) = split.events.PaymentReceived().process_receipt(
        w3.eth.wait_for_transaction_receipt(royalty), errors=DISCARD
    )
    assert dict(received.args) == {"from": MALLORY.address, "amount": PRICE}
    (created,) = split.events.SplitCreated().get_logs(from_block=0)
    assert [list(created.args["payees"]), list(created.args["shares"])] == [
        [PAULA.address, DORA.address],
        [7_000, 3_000],
    ]
    s = split.functions
    assert s.releasable(PAULA.address).call() == 4 * PRICE * 7 // 10
    before = balance(w3, DORA.address)
    receipt = transact(w3, s.release(DORA.address), MALLORY)  # anyone may trigger a payee's pay
    assert balance(w3, DORA.address) == before + 4 * PRICE * 3 // 10
    (released,) = split.events.PaymentReleased().process_receipt(receipt, errors=DISCARD)
    assert dict(released.args) == {"payee": DORA.address, "amount": 4 * PRICE * 3 // 10}
    assert split_revert(s.release(DORA.address)) == ("NothingToRelease", DORA.address.lower())
    assert split_revert(s.release(MALLORY.address)) == ("NothingToRelease", MALLORY.address.lower())
    # later income is shared on the same terms, whoever released before
    buy(w3, contract, 1, COLIN, PRICE)
    transact(w3, f.withdraw(), ADA)
    transact(w3, s.release(PAULA.address), PAULA)
    transact(w3, s.release(DORA.address), PAULA)
    assert s.released(PAULA.address).call() == 5 * PRICE * 7 // 10
    assert s.released(DORA.address).call() == 5 * PRICE * 3 // 10
    assert balance(w3, split.address) == 0


def test_a_payee_that_refuses_ether_holds_up_only_its_own_share(w3: Web3) -> None:
    refuser = deploy(w3)  # a collection has no receive(): it refuses plain ether
    address, _ = deploy_split(
        w3, ADA.private_key, [(refuser.address, 5_000), (DORA.address, 5_000)]
    )
    split = bind_split(w3, address)
    w3.eth.send_transaction({"from": COLIN.address, "to": address, "value": 2 * PRICE})
    assert split_revert(split.functions.release(refuser.address)) == ("FailedCall", None)
    transact(w3, split.functions.release(DORA.address), ADA)
    assert balance(w3, address) == PRICE


@pytest.mark.parametrize(
    "splits",
    [
        [],
        [(PAULA.address, 5_000), (DORA.address, 4_999)],
        [(PAULA.address, 5_000), (PAULA.address, 5_000)],
        [(PAULA.address, 10_000), (DORA.address, 0)],
        [(ZERO, 10_000)],
        [(f"0x{i + 1:040x}", 625) for i in range(17)],
    ],
    ids=["empty", "short of 10000", "payee twice", "zero share", "zero address", "17 payees"],
)
def test_a_bad_split_is_refused(w3: Web3, splits: list[tuple[str, int]]) -> None:
    with pytest.raises(ContractCustomError) as info:
        deploy_split(w3, ADA.private_key, splits)
    assert bytes.fromhex(str(info.value.data)[2:]) == selector("InvalidSplit()")


def test_payee_and_splits_cannot_both_be_given(w3: Web3) -> None:
    with pytest.raises(ValueError, match="give payee or splits, not both"):
        deploy_contract(w3, ADA.private_key, name="X", symbol="X", price_wei=1, max_supply=1,
                        payee=PAULA.address, splits=[(PAULA.address, 10_000)])  # fmt: skip
