"""The mint page in a sale with phases (issue 19), in Chromium against a real anvil and the live
server, with the test wallet of tests/test_pages.py.

Colin collects (anvil account 3) and is on the allowlist; Mallory (account 2) is on no list;
Dora (account 4) buys in the auction after Colin. The admin (account 0, the deployer)
schedules the phases directly on the contract, and time moves by mining a block at a chosen
timestamp (``at``), so each phase boundary and auction step is exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, Anvil
from chain.contract import bind
from chain.sale_phase import PhaseStruct
from generation.models import Collection
from mintsite.pages.sale import ZERO_ROOT, Sale
from mintsite.pages.sale import Phase as SalePhase
from sales.allowlist import Entry
from sales.building import create_allowlist
from tests.test_contract_sales import Phase, at, now
from tests.test_listener import mine
from tests.test_pages import STEP, Browser, deploy, in_thread, listen, message, wallet_for

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN, _, MALLORY, COLIN, DORA = ANVIL_ACCOUNTS[:5]
PRICE = Web3.to_wei(0.01, "ether")


@pytest.fixture
def browser(live_server, settings) -> Iterator[Browser]:  # type: ignore[no-untyped-def]
    # a token left unpublished keeps its card's event stream open: short streams end with the
    # test, so no server thread holds a database connection past it
    settings.API_STREAM_MAX_SECONDS = 1.0
    browser = Browser(live_server.url)
    yield browser
    browser.close()
    assert browser.errors == [], f"uncaught errors in the page: {browser.errors}"


def schedule(w3: Web3, collection: Collection, *phases: PhaseStruct) -> None:
    """The admin schedules ``phases``, taking the sales role first where the contract has one
    and deploy_collection gave it to another account."""
    contract = bind(w3, collection.contract_address)
    if any(entry.get("name") == "SALES_ROLE" for entry in contract.abi):
        role = contract.functions.SALES_ROLE().call()
        if not contract.functions.hasRole(role, ADMIN.address).call():
            tx = contract.functions.grantRole(role, ADMIN.address).transact({"from": ADMIN.address})
            assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    for phase_id, phase in enumerate(phases):
        tx = contract.functions.setPhase(phase_id, tuple(phase)).transact({"from": ADMIN.address})
        assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


def allowlisted(w3: Web3, slug: str, entries: list[tuple[str, int]]) -> tuple[Collection, bytes]:
    """A new collection with the allowlist "early" of ``entries``: the collection and the root."""
    collection = deploy(w3, slug)
    allowlist = create_allowlist(
        collection, "early", [Entry(address, n, line) for line, (address, n) in enumerate(entries)]
    )
    return collection, allowlist.root_bytes


def connect(page: Page, account: str) -> None:
    page.get_by_role("button", name="Connect wallet").click()
    expect(page.locator("#account")).to_have_text(account)


def minted_in(w3: Web3, page: Page, collection: Collection) -> dict[str, Any]:
    """The mint transaction the page reports ("… in block N.")."""
    text = page.locator("#tx-status").inner_text()
    found = re.search(r"in block (\d+)", text)
    assert found, text
    block = w3.eth.get_block(int(found.group(1)), full_transactions=True)
    [tx] = [t for t in block["transactions"] if t["to"] == collection.contract_address]
    return dict(tx)


def test_an_allowlisted_wallet_sees_its_allowance_and_mints_in_the_allowlist_phase(
    w3: Web3, anvil: Anvil, browser: Browser
) -> None:
    # Given an allowlist phase at 0.02 ETH (Colin may mint 2), then a public one, 3 per wallet
    collection, root = allowlisted(w3, "sale-allowlist", [(COLIN.address, 2), (DORA.address, 1)])
    contract = bind(w3, collection.contract_address)
    t0 = now(w3) + 1000
    schedule(
        w3,
        collection,
        Phase(t0, t0 + 1000, price=2 * PRICE, floor_price=2 * PRICE, merkle_root=root),
        Phase(t0 + 1000, t0 + 2000, max_per_wallet=3),
    )

    # Before the sale opens, the page says when it does
    page = browser.open("/", wallet_for(anvil, account=COLIN.address))
    expect(page.locator("#phase")).to_contain_text("Sale not open — opens ")
    expect(page.locator("#mint")).to_have_text("Not open yet")
    expect(page.locator("#mint")).to_be_disabled()

    # When the allowlist phase is open: its name, price and limit, and Colin's allowance
    at(w3, t0 + 10)
    page.reload()
    expect(page.locator("#phase")).to_have_text("Allowlist")
    expect(page.locator("#price")).to_have_text("0.02 ETH")
    expect(page.locator("#phase-cap")).to_have_text("each wallet's allowance")
    connect(page, COLIN.address)
    eligibility = page.locator("#eligibility")
    expect(eligibility).to_have_text(
        "On the allowlist “early” (allowance 2): may mint 2 more in this phase."
    )
    expect(page.locator("#owned-empty")).to_be_visible()

    # Then Colin mints one with the proof the page fetched
    page.get_by_role("button", name="Mint").click()
    expect(page.locator("#tx-status")).to_contain_text("Minted token #1", timeout=STEP)
    expect(page.locator("#token-1")).to_be_visible()
    expect(eligibility).to_have_text(
        "On the allowlist “early” (allowance 2): may mint 1 more in this phase."
    )
    tx = minted_in(w3, page, collection)
    assert contract.decode_function_input(tx["input"])[0].fn_name == "mintAllowlisted"
    assert tx["value"] == 2 * PRICE
    assert contract.functions.mintedInPhase(0, COLIN.address).call() == 1
    assert contract.functions.ownerOf(1).call() == COLIN.address

    # and once the backend records the mint, the token is listed among the wallet's
    mine(w3, 2)
    in_thread(lambda: listen(w3, collection))
    expect(page.locator("#owned-1")).to_contain_text(f"{collection.name} #1", timeout=STEP)
    expect(page.locator("#owned-empty")).to_be_hidden()


def test_a_stranger_is_refused_in_the_allowlist_phase_and_nothing_is_sent(
    w3: Web3, anvil: Anvil, browser: Browser
) -> None:
    collection, root = allowlisted(w3, "sale-stranger", [(COLIN.address, 2)])
    t0 = now(w3) + 10
    schedule(w3, collection, Phase(t0, t0 + 1000, merkle_root=root))
    at(w3, t0 + 1)

    page = browser.open("/", wallet_for(anvil, account=MALLORY.address))
    connect(page, MALLORY.address)
    expect(page.locator("#eligibility")).to_have_text(
        "This wallet is not on the allowlist for this phase."
    )
    page.get_by_role("button", name="Mint").click()
    expect(message(page, "not-allowlisted")).to_have_text(
        "This wallet is not on the allowlist for this phase, so it cannot mint until a public "
        "phase opens. Nothing was sent."
    )
    assert "eth_sendTransaction" not in page.evaluate("window.__testWallet.calls")
    assert bind(w3, collection.contract_address).functions.totalSupply().call() == 0


def test_a_dutch_auction_mint_pays_the_live_price_and_the_excess_comes_back(
    w3: Web3, anvil: Anvil, browser: Browser
) -> None:
    # Given an auction from 0.05 ETH falling 0.01 ETH a minute to 0.02 ETH, 3 per wallet
    collection = deploy(w3, "sale-auction")
    contract = bind(w3, collection.contract_address)
    t0 = now(w3) + 100
    auction = Phase(
        t0,
        t0 + 600,
        step_seconds=60,
        max_per_wallet=3,
        price=5 * PRICE,
        floor_price=2 * PRICE,
        drop_per_step=PRICE,
    )
    schedule(w3, collection, auction)

    # In its second minute the page shows the live price, the next step and the floor
    at(w3, t0 + 70)
    page = browser.open("/", wallet_for(anvil, account=COLIN.address))
    expect(page.locator("#phase")).to_have_text("Dutch auction")
    expect(page.locator("#price")).to_have_text("0.04 ETH")
    expect(page.locator("#price-detail")).to_contain_text("falls to 0.03 ETH in 0:")
    expect(page.locator("#price-detail")).to_contain_text("floor 0.02 ETH")
    expect(page.locator("#phase-cap")).to_have_text("3 per wallet")
    expect(page.locator("#auction-note")).to_contain_text("clearing")

    # When Colin mints two, he pays price() × 2
    connect(page, COLIN.address)
    expect(page.locator("#eligibility")).to_have_text("May mint 3 more in this phase.")
    page.get_by_label("Quantity").fill("2")
    page.get_by_role("button", name="Mint").click()
    expect(page.locator("#tx-status")).to_contain_text("Minted tokens #1, #2", timeout=STEP)
    tx = minted_in(w3, page, collection)
    assert contract.decode_function_input(tx["input"])[0].fn_name == "mint"
    assert tx["value"] == 2 * 4 * PRICE
    # with a fifth over the estimate, as an auction's first second prices on a shorter path
    used = w3.eth.get_transaction_receipt(tx["hash"])["gasUsed"]
    assert tx["gas"] >= used * 1.15
    assert w3.eth.get_balance(collection.contract_address) == 8 * PRICE
    expect(page.locator("#eligibility")).to_have_text("May mint 1 more in this phase.")

    # Dora buys at the floor, which becomes the clearing price; then the auction ends while the
    # page's clock still has it running: the contract refuses, and the page says why
    at(w3, t0 + 200)
    tx_hash = contract.functions.mint(1).transact({"from": DORA.address, "value": 2 * PRICE})
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    at(w3, t0 + 700)
    page.get_by_label("Quantity").fill("1")
    page.get_by_role("button", name="Mint").click()
    expect(message(page, "sale-over")).to_have_text("The sale is over: every phase has ended.")
    expect(page.locator("#phase")).to_have_text("Sale over")

    # Colin paid 0.08 ETH for two tokens that clear at 0.02 ETH: 0.04 ETH comes back
    refund = page.locator("#refund-0")
    expect(refund).to_contain_text("you paid 0.04 ETH above its clearing price")
    refund.get_by_role("button", name="Claim refund").click()
    expect(page.locator("#tx-status")).to_contain_text("Refund of 0.04 ETH claimed", timeout=STEP)
    expect(page.locator("#refunds")).to_be_hidden()
    assert contract.functions.refundOf(0, COLIN.address).call() == 0
    assert w3.eth.get_balance(collection.contract_address) == (8 + 2 - 4) * PRICE


# -- the view's first render (mintsite/pages/sale.py); mint.js applies the same rules ----------

AUCTION = SalePhase(0, 1000, 1600, 60, 3, 5 * PRICE, 2 * PRICE, PRICE, ZERO_ROOT)
LISTED = SalePhase(1, 2000, 3000, 0, 0, 2 * PRICE, 2 * PRICE, 0, "0x" + "ab" * 32)


@pytest.mark.parametrize(
    ("chain_time", "headline", "price"),
    [
        (999, "Sale not open — opens 1970-01-01 00:16 UTC", None),
        (1000, "Dutch auction", 5 * PRICE),
        (1059, "Dutch auction", 5 * PRICE),
        (1060, "Dutch auction", 4 * PRICE),
        (1599, "Dutch auction", 2 * PRICE),  # the floor
        (1600, "Sale not open — opens 1970-01-01 00:33 UTC", None),
        (2500, "Allowlist", 2 * PRICE),
        (3000, "Sale over", None),
    ],
)
def test_it_names_the_phase_and_its_price_at_the_chain_time(
    chain_time: int, headline: str, price: int | None
) -> None:
    sale = Sale((AUCTION, LISTED), chain_time)
    assert sale.headline == headline
    phase = sale.open_phase
    assert (phase.price_at(chain_time) if phase else None) == price
    assert Sale((), chain_time).headline == "Public"
