"""The collector's pages: the mint page in a real browser, the gallery and the token page.

The browser is Debian's headless Chromium (``/usr/bin/chromium``, installed by ``make install``)
driven by Playwright; it never downloads one. The page talks to a test wallet
(tests/eip1193_provider.js) that forwards JSON-RPC to a real anvil whose accounts are unlocked,
and to the app served by pytest-django's ``live_server``. After a mint, the test runs the real
pipeline stages in-process (listener, seed commit, render with the reference models, pin,
publish) and checks that the page follows the token through each one and reveals its image.

Playwright's sync API keeps an asyncio loop running in the test's thread, where Django refuses
database calls; so while a browser is open, every database call of the test goes through
``in_thread``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from django.db import connections
from django.test import Client
from PIL import Image
from playwright.sync_api import Page, Playwright, expect, sync_playwright
from web3 import Web3

from chain import publishing
from chain.anvil import ANVIL_ACCOUNTS, Anvil, free_port
from chain.contract import bind
from chain.deployment import CollectionSpec, deploy_collection
from chain.listener import Listener
from chain.models import Chain
from chain.seed_commit import commit_seeds
from chain.vrf import fulfil_pending
from devtools.rarity_fixtures import WEIGHTED as PALETTE
from generation import pipeline
from generation.models import Collection, Token
from tests.test_listener import mine, mint
from tests.test_verify import LyingGateway

pytestmark = pytest.mark.django_db(transaction=True)

DEPLOYER, COMMITTER, PUBLISHER, COLLECTOR, BROKE_COLLECTOR = ANVIL_ACCOUNTS[:5]
Status = Token.Status
REPO = Path(__file__).resolve().parent.parent
# The test screenshots the page it checked; it replaces the README's picture only when asked
# (MINT_UPDATE_SCREENSHOT=1), so a test run leaves the checkout as it found it.
SCREENSHOT = REPO / "docs" / "mint-page.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROVIDER_JS = (Path(__file__).parent / "eip1193_provider.js").read_text()
STEP = 20_000  # ms a page may take to show what a step changed (it polls every 1.5 s)

T = TypeVar("T")


class InThread(threading.Thread):
    """Runs ``fn`` in its own thread (its own database connection, closed when done)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()

    def result(self, timeout: float = 120.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), f"{self.fn} still running after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.value


def in_thread(fn: Callable[[], T]) -> T:
    worker = InThread(fn)
    worker.start()
    return worker.result()


def listen(w3: Web3, collection: Collection) -> list[int]:
    """One listener poll, as the daemon runs it: the pks of the tokens it confirmed."""
    handed: list[int] = []
    chain = Chain.objects.get(chain_id=collection.chain_id)
    Listener(w3, chain, on_confirmed=lambda c, pks: handed.extend(pks)).poll()
    return handed


def publish_all(w3: Web3, collection: Collection) -> list[Token]:
    """Every minted token of the collection through the real pipeline to FINAL."""
    mine(w3, 2)
    pks = listen(w3, collection)
    commit_seeds(w3, collection, pks, lambda token: None)
    for pk in pks:
        assert pipeline.run_render(pk) == Status.RENDERED
        assert pipeline.run_pin(pk) == Status.PINNED
    assert sorted(publishing.publish_batch(collection.pk).published) == sorted(pks)
    mine(w3, 2)
    listen(w3, collection)
    return list(Token.objects.filter(pk__in=pks).order_by("token_id"))


class Browser:
    """Chromium, started on the first page a test opens (after its database set-up)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.playwright: Playwright | None = None
        self.errors: list[str] = []

    def open(self, path: str, wallet: dict[str, Any] | None) -> Page:
        """``path`` of the app with the test wallet configured by ``wallet`` (None: no wallet)."""
        if not CHROMIUM.exists():
            pytest.fail(
                f"{CHROMIUM} is missing: run `make install` (it installs Debian's chromium)"
            )
        if self.playwright is None:
            self.playwright = sync_playwright().start()
            self.browser = self.playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
        context = self.browser.new_context(viewport={"width": 1100, "height": 1000})
        if wallet is not None:
            context.add_init_script(f"window.__testWallet = {json.dumps(wallet)};\n{PROVIDER_JS}")
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.goto(self.base_url + path)
        return page

    def close(self) -> None:
        if self.playwright is not None:
            self.browser.close()
            self.playwright.stop()


@pytest.fixture
def browser(live_server, settings) -> Iterator[Browser]:  # type: ignore[no-untyped-def]
    # image_url and metadata_url name the gateway the browser can reach: the live server's
    settings.IPFS_GATEWAY_URL = f"{live_server.url}/ipfs"
    browser = Browser(live_server.url)
    yield browser
    browser.close()
    assert browser.errors == [], f"uncaught errors in the page: {browser.errors}"


def wallet_for(anvil: Anvil, account: str = COLLECTOR.address, **options: Any) -> dict[str, Any]:
    return {"rpcUrl": anvil.rpc_url, "account": account, "chainId": hex(31337), **options}


def deploy(w3: Web3, slug: str, **spec: Any) -> Collection:
    return deploy_collection(w3, DEPLOYER.private_key, CollectionSpec(slug=slug, **spec))


def message(page: Page, kind: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#messages [data-kind="{kind}"]')


# -- the mint page in a browser ---------------------------------------------------------------


def test_a_collector_mints_and_watches_the_token_through_every_stage(
    w3: Web3, anvil: Anvil, reference_models: Path, browser: Browser, settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    collection = deploy(
        w3,
        "pages-mint",
        name="Painted Seeds",
        description="Small abstract paintings, rendered on demand from each mint's seed.",
        rarity=PALETTE,
        prompt_template="an abstract painting {palette}, token {token_id}",
    )
    # A lone render waits this long for batch-mates in RENDERING, long enough to be seen
    settings.RENDER_BATCH_SIZE, settings.RENDER_BATCH_WAIT = 4, 2.5

    # Given the mint page and a connected wallet
    page = browser.open("/", wallet_for(anvil))
    # token 2's stream answers as a server without the SSE endpoint would: it is polled
    page.route(
        "**/tokens/2/stream/",
        lambda route: route.fulfill(status=404, json={"error": "not_found", "detail": "none"}),
    )
    expect(page.get_by_role("heading", name="Painted Seeds")).to_be_visible()
    expect(page.locator("#price")).to_have_text("0.01 ETH")
    expect(page.locator("#supply")).to_have_text("1000 of 1000")
    page.get_by_role("button", name="Connect wallet").click()
    expect(page.locator("#account")).to_have_text(COLLECTOR.address)

    # When the collector mints two tokens
    page.get_by_label("Quantity").fill("2")
    expect(page.locator("#total-value")).to_have_text("0.02")
    page.get_by_role("button", name="Mint").click()

    # Then the page reads the token ids from the receipt and waits for the listener
    first, second = page.locator("#token-1"), page.locator("#token-2")
    expect(page.locator("#tx-status")).to_contain_text("Minted tokens #1, #2", timeout=STEP)
    expect(page.locator("#supply")).to_have_text("998 of 1000", timeout=STEP)
    expect(first.locator(".badge")).to_have_text("confirming")
    expect(first.locator(".stages li.active")).to_have_text("Confirming")

    mine(w3, 2)
    pks = in_thread(lambda: listen(w3, collection))
    assert len(pks) == 2
    expect(first.locator(".badge")).to_have_text("committing seed", timeout=STEP)
    expect(first).to_have_attribute("data-transport", "stream")  # the API's SSE endpoint
    expect(second.locator(".badge")).to_have_text("committing seed", timeout=STEP)
    expect(second).to_have_attribute("data-transport", "polling")

    in_thread(lambda: commit_seeds(w3, collection, pks, lambda token: None))
    expect(first.locator(".badge")).to_have_text("seed committed", timeout=STEP)
    expect(first.locator(".stages li.done")).to_have_text(["Confirming", "Seed committed"])

    rendering = InThread(lambda: pipeline.run_render(pks[0]))
    rendering.start()
    expect(first.locator(".badge")).to_have_text("rendering", timeout=STEP)
    expect(first.locator(".stages li.active")).to_have_text(["Rendering", "Verifying"])
    assert rendering.result() == Status.RENDERED
    expect(first.locator(".badge")).to_have_text("pinning", timeout=STEP)

    assert in_thread(lambda: pipeline.run_pin(pks[0])) == Status.PINNED
    expect(first.locator(".badge")).to_have_text("pinned", timeout=STEP)
    expect(first.locator(".stages li.active")).to_have_text("Pinning")
    # the second token has not moved: each token is followed on its own
    expect(second.locator(".badge")).to_have_text("seed committed", timeout=STEP)
    expect(second.locator(".reveal")).to_be_hidden()

    summary = in_thread(lambda: publishing.publish_batch(collection.pk))
    assert summary.published == [pks[0]]
    expect(first.locator(".badge")).to_have_text("published", timeout=STEP)

    # The image is revealed with its traits and a link to the token page
    token = in_thread(lambda: Token.objects.get(pk=pks[0]))
    image = first.locator("img.token-image")
    expect(image).to_have_attribute("src", f"{browser.base_url}/ipfs/{token.image_cid}")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=STEP
    )
    rarity = {"warm": "75", "cold": "25"}[token.traits["palette"]]
    expect(first.locator(".traits li")).to_have_text(
        [f"palette: {token.traits['palette']} (rarity {rarity}%)"], timeout=STEP
    )
    expect(first.get_by_role("link", name="Token page")).to_have_attribute(
        "href", "/c/pages-mint/tokens/1/"
    )

    mine(w3, 2)
    in_thread(lambda: listen(w3, collection))
    expect(first.locator(".badge")).to_have_text("final", timeout=STEP)
    expect(first.locator(".bar")).to_have_js_property("value", 100)
    expect(first.locator(".stages li.done")).to_have_count(7)
    history = first.locator(".history-list li")
    for label in ["confirming", "committing seed", "seed committed", "rendering", "pinning"]:
        expect(history.filter(has_text=label).first).to_be_attached()

    expect(second.locator(".reveal")).to_be_hidden()
    box = first.bounding_box()
    assert box is not None
    screenshot = SCREENSHOT if os.environ.get("MINT_UPDATE_SCREENSHOT") else tmp_path / "page.png"
    page.screenshot(
        path=str(screenshot),
        full_page=True,
        clip={"x": 0, "y": 0, "width": 1100, "height": box["y"] + box["height"] + 24},
    )
    with Image.open(screenshot) as shot:  # a 256-colour palette keeps it near 50 kB
        shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            screenshot, optimize=True
        )


def test_without_a_wallet_it_says_so_and_still_shows_price_and_supply(
    w3: Web3, browser: Browser
) -> None:
    deploy(w3, "pages-no-wallet")
    page = browser.open("/c/pages-no-wallet/", None)
    expect(message(page, "no-wallet")).to_contain_text("No wallet found")
    expect(page.locator("#price")).to_have_text("0.01 ETH")
    expect(page.get_by_role("button", name="Connect wallet")).to_be_disabled()
    expect(page.get_by_role("button", name="Mint")).to_be_disabled()


def test_every_wallet_announced_by_eip6963_is_offered_by_name(
    w3: Web3, anvil: Anvil, browser: Browser
) -> None:
    # Given two injected wallets that announce themselves (EIP-6963) and no window.ethereum
    collection = deploy(w3, "pages-wallets")
    wallet = wallet_for(anvil, announce=["Alpha Wallet", "Beta Wallet"], legacy=False)
    page = browser.open("/", wallet)
    # Then both are offered, by name
    choice = page.get_by_label("Wallet")
    expect(choice).to_be_visible()
    expect(choice.locator("option")).to_have_text(["Alpha Wallet", "Beta Wallet"])
    # When the collector picks the second, connects and mints
    choice.select_option(label="Beta Wallet")
    page.get_by_role("button", name="Connect wallet").click()
    expect(page.locator("#account")).to_have_text(COLLECTOR.address)
    page.get_by_role("button", name="Mint").click()
    expect(page.locator("#tx-status")).to_contain_text("Minted token #1", timeout=STEP)
    # Then every request went through the wallet chosen
    assert page.evaluate("window.__testWallet.lastUsed") == "Beta Wallet"
    assert bind(w3, collection.contract_address).functions.totalSupply().call() == 1


def test_a_single_announced_wallet_is_used_without_asking(
    w3: Web3, anvil: Anvil, browser: Browser
) -> None:
    deploy(w3, "pages-one-wallet")
    page = browser.open("/", wallet_for(anvil, announce=["Only Wallet"], legacy=False))
    expect(page.get_by_label("Wallet")).to_be_hidden()
    page.get_by_role("button", name="Connect wallet").click()
    expect(page.locator("#account")).to_have_text(COLLECTOR.address)
    assert page.evaluate("window.__testWallet.lastUsed") == "Only Wallet"


def test_rejections_in_the_wallet_are_explained(w3: Web3, anvil: Anvil, browser: Browser) -> None:
    collection = deploy(w3, "pages-rejected")
    page = browser.open("/", wallet_for(anvil, reject=["eth_requestAccounts"]))

    # The collector declines the connection request
    page.get_by_role("button", name="Connect wallet").click()
    expect(message(page, "connect-rejected")).to_contain_text("You declined the connection")
    expect(page.locator("#account")).to_have_text("not connected")

    # then connects, and rejects the mint's signature
    page.evaluate("window.__testWallet.reject = ['eth_sendTransaction']")
    page.get_by_role("button", name="Connect wallet").click()
    expect(page.locator("#account")).to_have_text(COLLECTOR.address)
    expect(message(page, "connect-rejected")).to_have_count(0)
    page.get_by_role("button", name="Mint").click()
    expect(message(page, "rejected")).to_have_text(
        "You rejected the transaction in your wallet; nothing was sent and nothing was charged."
    )
    expect(page.get_by_role("button", name="Mint")).to_be_enabled()
    assert bind(w3, collection.contract_address).functions.totalSupply().call() == 0


def test_on_the_wrong_chain_it_offers_to_switch_and_adds_the_chain(
    w3: Web3, anvil: Anvil, browser: Browser
) -> None:
    deploy(w3, "pages-chain")
    wallet = wallet_for(anvil, chainId="0x1", knownChains=["0x1"])
    page = browser.open("/", wallet)
    page.get_by_role("button", name="Connect wallet").click()
    expect(message(page, "wrong-chain")).to_contain_text(
        "Your wallet is on chain 1, but this collection lives on Anvil (local) (chain 31337)"
    )
    expect(page.get_by_role("button", name="Mint")).to_be_enabled()  # it explains on click
    page.get_by_role("button", name="Mint").click()
    expect(message(page, "wrong-chain")).to_contain_text("Switch your wallet to Anvil (local)")

    # The wallet does not know the chain (4902): the page adds it, then it is on it
    page.get_by_role("button", name="Switch to Anvil (local)").click()
    expect(message(page, "wrong-chain")).to_have_count(0)
    expect(page.get_by_role("button", name="Switch to Anvil (local)")).to_be_hidden()
    added = page.evaluate("window.__testWallet.added")
    assert added["chainId"] == "0x7a69"
    assert added["rpcUrls"] == [anvil.rpc_url]
    calls = page.evaluate("window.__testWallet.calls")
    assert calls.index("wallet_switchEthereumChain") < calls.index("wallet_addEthereumChain")


def test_insufficient_funds_are_named(w3: Web3, anvil: Anvil, browser: Browser) -> None:
    collection = deploy(w3, "pages-broke")
    balance = w3.eth.get_balance(BROKE_COLLECTOR.address)
    w3.provider.make_request("anvil_setBalance", [BROKE_COLLECTOR.address, "0x0"])
    try:
        page = browser.open("/", wallet_for(anvil, account=BROKE_COLLECTOR.address))
        page.get_by_role("button", name="Connect wallet").click()
        page.get_by_label("Quantity").fill("3")
        page.get_by_role("button", name="Mint").click()
        expect(message(page, "insufficient-funds")).to_have_text(
            "Insufficient funds: 3 tokens cost 0.03 ETH plus gas, and your account holds 0 ETH."
        )
        assert "eth_sendTransaction" not in page.evaluate("window.__testWallet.calls")

        # Enough for the price but not for the gas: the node refuses, the page says why
        w3.provider.make_request("anvil_setBalance", [BROKE_COLLECTOR.address, hex(10**16)])
        mine(w3, 1)  # the page reads balances at the latest block
        page.get_by_label("Quantity").fill("1")
        page.get_by_role("button", name="Mint").click()
        expect(message(page, "insufficient-funds")).to_have_text(
            "Insufficient funds: your account cannot pay for this mint and its gas. "
            "Add ETH to it or mint fewer tokens.",
            timeout=STEP,
        )
    finally:
        w3.provider.make_request("anvil_setBalance", [BROKE_COLLECTOR.address, hex(balance)])
    assert bind(w3, collection.contract_address).functions.totalSupply().call() == 0


def test_a_sold_out_collection_says_so_and_disables_the_mint_button(
    w3: Web3, anvil: Anvil, browser: Browser
) -> None:
    # 3 tokens, 2 of them the creator's reserve: one is for sale
    collection = deploy(w3, "pages-sold-out", max_supply=3, reserve=2)
    page = browser.open("/", wallet_for(anvil))
    page.get_by_role("button", name="Connect wallet").click()
    # read through the wallet, not the figure the server put in the page
    expect(page.locator('#supply[data-source="chain"]')).to_have_text("1 of 3")

    # Someone else takes the last token while the page is open: the mint reverts SoldOut
    mint(w3, collection, 1)
    page.get_by_role("button", name="Mint").click()
    expect(message(page, "sold-out")).to_contain_text("Sold out", timeout=STEP)
    expect(page.locator("#supply")).to_have_text("0 of 3")
    expect(page.locator("#mint")).to_be_disabled()

    # and a fresh visit says so from the start
    page.reload()
    expect(message(page, "sold-out")).to_have_text(
        "Sold out: every token for sale has been minted (2 kept in the creator's reserve)."
    )
    expect(page.get_by_role("button", name="Sold out")).to_be_disabled()


def test_a_paused_contract_says_minting_is_paused(w3: Web3, anvil: Anvil, browser: Browser) -> None:
    collection = deploy(w3, "pages-paused")
    contract = bind(w3, collection.contract_address)
    w3.eth.wait_for_transaction_receipt(
        # the sale worker's account holds SALES_ROLE (deploy_collection hands it over)
        contract.functions.pause().transact({"from": ANVIL_ACCOUNTS[5].address})
    )
    page = browser.open("/", wallet_for(anvil))
    expect(message(page, "paused")).to_contain_text("Minting is paused")
    expect(page.locator("#mint")).to_be_disabled()


# -- server-rendered pages ---------------------------------------------------------------------


@pytest.fixture
def published(w3: Web3, reference_models: Path, settings) -> Token:  # type: ignore[no-untyped-def]
    settings.RENDER_BATCH_SIZE = 1
    collection = deploy(
        w3,
        "pages-token",
        name="Painted Seeds",
        rarity=PALETTE,
        prompt_template="an abstract painting {palette}, token {token_id}",
    )
    mint(w3, collection, 1)
    (token,) = publish_all(w3, collection)
    return token


def test_the_token_page_shows_the_provenance_and_the_on_chain_token_uri(
    client: Client, published: Token, settings
) -> None:  # type: ignore[no-untyped-def]
    token = published
    assert token.status == Status.FINAL
    response = client.get("/c/pages-token/tokens/1/")
    assert response.status_code == 200
    html = response.content.decode()
    record = token.render_record
    for shown in [
        "Painted Seeds #1",
        f'src="{settings.IPFS_GATEWAY_URL}/{token.image_cid}"',
        token.seed,
        token.mint_block_hash,
        token.mint_tx_hash,
        record["model"]["fingerprint"],
        record["model"]["scheduler"],
        token.clip_scores["model_fingerprint"],
        f"{settings.IPFS_GATEWAY_URL}/{token.metadata_cid}",
        "matches the metadata below",
        "at least -1.000000",  # the style threshold of the reference collection
        'href="/api/collections/pages-token/tokens/1/provenance/"',
    ]:
        assert shown in html, shown
    # tokenURI as the contract answers it
    assert re.search(rf'id="token-uri">\s*ipfs://{token.metadata_cid}\s', html)
    rarity = {"warm": "75.0%", "cold": "25.0%"}[token.traits["palette"]]
    assert f"<td>{token.traits['palette']}</td><td>{rarity}</td>" in html
    # the stage history the pipeline recorded
    assert "final" in html and "publish block confirmed" in html


def test_check_it_yourself_recomputes_the_token_from_the_chain_and_a_gateway(
    anvil: Anvil, browser: Browser, published: Token, live_server
) -> None:  # type: ignore[no-untyped-def]
    # Given the token page, whose panel offers the chain's RPC and the deployment's gateway
    page = browser.open("/c/pages-token/tokens/1/", None)
    expect(page.locator("#verify-rpc")).to_have_value(anvil.rpc_url)
    # When the visitor checks, the browser alone recomputes each claim, and each passes
    page.click("#verify-run")
    summary = page.locator("#verify-summary")
    expect(summary).to_have_text("6 checks passed, from the chain and the gateway alone.")
    for name in ("chain", "seed", "token URI", "metadata", "provenance", "image"):
        expect(page.locator(f'#verify-steps li[data-step="{name}"]')).to_have_class("ok")
    expect(page.locator('#verify-steps li[data-step="seed"]')).to_contain_text(published.seed)
    # A gateway that serves other metadata (one description edited) is caught, and said so
    document = json.loads(httpx.get(f"{live_server.url}/ipfs/{published.metadata_cid}").content)
    document["description"] = "a nicer story"
    liar = LyingGateway(f"{live_server.url}/ipfs")
    liar.overrides[published.metadata_cid] = json.dumps(document).encode()
    try:
        page.fill("#verify-gateway", f"{liar.url}/ipfs")
        page.click("#verify-run")
        metadata = page.locator('#verify-steps li[data-step="metadata"]')
        expect(metadata).to_have_class("bad")
        expect(metadata).to_contain_text("hash to")
        expect(summary).to_contain_text("1 check(s) failed")
    finally:
        liar.server.shutdown()
        liar.server.server_close()
    # An RPC that cannot be reached ends the check with a failure that says so, not a spinner
    page.fill("#verify-rpc", f"http://127.0.0.1:{free_port()}")
    page.click("#verify-run")
    expect(summary).to_contain_text("1 check(s) failed")
    expect(page.locator('#verify-steps li[data-step="error"]')).to_have_class("bad")
    expect(page.locator("#verify-run")).to_be_enabled()


@pytest.mark.parametrize("source", ["future-block", "vrf"])
def test_check_it_yourself_follows_the_collections_seed_source(
    w3: Web3, anvil: Anvil, browser: Browser, reference_models: Path, settings, source: str
) -> None:  # type: ignore[no-untyped-def]
    # Given a published token of a collection seeded from a later block, or by Chainlink VRF
    settings.RENDER_BATCH_SIZE = 1
    spec = {"seed_delay": 2} if source == "future-block" else {"vrf_coordinator": "local"}
    collection = deploy(w3, f"pages-{source}", rarity=PALETTE, **spec)
    mint(w3, collection, 1)
    mine(w3, 2)
    pks = listen(w3, collection)
    if source == "vrf":
        commit_seeds(w3, collection, pks, lambda token: None)  # the request
        fulfil_pending(w3, DEPLOYER.private_key, collection.vrf_coordinator)
    else:
        mine(w3, 2)  # the seed block and its confirmations
    commit_seeds(w3, collection, pks, lambda token: None)
    for pk in pks:
        assert pipeline.run_render(pk) == Status.RENDERED
        assert pipeline.run_pin(pk) == Status.PINNED
    assert publishing.publish_batch(collection.pk).published == pks
    token = Token.objects.get(pk=pks[0])
    # When the visitor checks it in the browser
    page = browser.open(f"/c/pages-{source}/tokens/1/", None)
    expected = (
        f"Seed block{token.mint_block_number + 2} (mint block + 2), hash {token.seed_block_hash}"
        if source == "future-block"
        else f"Seed sourceChainlink VRF {collection.vrf_coordinator}: request "
        f"{token.seed_record['request_id']}"
    )
    expect(page.locator("#provenance-heading + dl")).to_contain_text(expected)
    page.click("#verify-run")
    # Then the seed is recomputed from that source, and every step passes
    expect(page.locator("#verify-summary")).to_have_text(
        "6 checks passed, from the chain and the gateway alone."
    )
    seed = page.locator('#verify-steps li[data-step="seed"]')
    how = (
        f"hash of block {token.mint_block_number + 2} (mint block {token.mint_block_number} + 2)"
        if source == "future-block"
        else f"random word of VRF request {token.seed_record['request_id']}"
    )
    expect(seed).to_contain_text(how)
    expect(seed).to_contain_text(token.seed)


def test_the_pages_say_when_the_rpc_is_down_without_showing_its_url(
    client: Client, published: Token
) -> None:
    # an RPC URL may carry an API key: the page names the chain, never the URL
    down = f"http://127.0.0.1:{free_port()}/v2/secret-key"
    Chain.objects.filter(chain_id=published.collection.chain_id).update(rpc_urls=down)
    token_page = client.get("/c/pages-token/tokens/1/").content.decode()
    assert "The chain&#x27;s RPC endpoint (chain 31337) could not be reached" in token_page
    assert "image" in token_page and published.seed in token_page  # the rest still shows
    mint_page = client.get("/c/pages-token/").content.decode()
    assert '<button type="submit" id="mint" disabled>' in mint_page
    messages = re.search(r'<div id="messages".*?</div>', mint_page, re.S)
    assert messages is not None and "could not be reached" in messages[0]
    assert "secret-key" not in token_page + messages[0]
    # nor does the "Check it yourself" panel offer it: its RPC field is left for the visitor
    assert re.search(r'id="verify-rpc" type="url" required value=""', token_page)
    # nor the mint page's wallet config (wallet_addEthereumChain's rpcUrls)
    assert "secret-key" not in mint_page


def test_the_gallery_lists_published_tokens(client: Client, published: Token, settings) -> None:  # type: ignore[no-untyped-def]
    html = client.get("/c/pages-token/gallery/").content.decode()
    assert "1 published token." in html
    assert f'src="{settings.IPFS_GATEWAY_URL}/{published.image_cid}"' in html
    assert 'href="/c/pages-token/tokens/1/"' in html


def _collection(slug: str, address: int) -> Collection:
    """A collection row without a contract behind it; its chain's RPC is a closed port."""
    Chain.objects.get_or_create(
        chain_id=31337, defaults={"rpc_urls": f"http://127.0.0.1:{free_port()}"}
    )
    return Collection.objects.create(
        slug=slug,
        name=slug.title(),
        chain_id=31337,
        contract_address=f"0x{address:040x}",
        model_dir="m",
        clip_dir="c",
        prompt_template="p",
        style_prompt="s",
        clip_threshold=0.2,
    )


def _token(collection: Collection, token_id: int, status: str = Status.FINAL) -> Token:
    return Token.objects.create(
        collection=collection,
        token_id=token_id,
        owner="0x" + "11" * 20,
        mint_tx_hash=f"0x{token_id:064x}",
        mint_log_index=0,
        mint_block_number=5,
        mint_block_hash="0x" + "22" * 32,
        expected_seed="0x" + "44" * 32,
        status=status,
        image_cid=f"bafkreiimage{token_id}",
        metadata_cid=f"bafkreimeta{token_id}",
    )


def test_the_gallery_pages_through_published_tokens_only(client: Client) -> None:
    collection = _collection("many", 1)
    for token_id in range(1, 31):
        _token(collection, token_id)
    _token(collection, 31, Status.RENDERING)
    first = client.get("/c/many/gallery/").content.decode()
    assert "30 published tokens." in first
    assert first.count('class="card"') == 24
    assert "Page 1 of 2" in first and 'href="?page=2"' in first
    second = client.get("/c/many/gallery/?page=2").content.decode()
    assert second.count('class="card"') == 6
    assert "/c/many/tokens/30/" in second and "/c/many/tokens/31/" not in second


def test_a_token_not_published_yet_shows_its_stage(client: Client) -> None:
    collection = _collection("wip", 1)
    _token(collection, 4, Status.RENDERING)
    html = client.get("/c/wip/tokens/4/").content.decode()
    assert "Not published yet: <strong>rendering</strong>" in html
    assert "bafkreiimage4" not in html


@pytest.mark.parametrize("path", ["/c/nope/", "/c/nope/gallery/", "/c/wip/tokens/99/"])
def test_unknown_collections_and_tokens_are_404(client: Client, path: str) -> None:
    _collection("wip", 1)
    assert client.get(path).status_code == 404


def test_the_home_page_lists_collections_when_there_are_several(client: Client) -> None:
    assert "No collection has been deployed yet" in client.get("/").content.decode()
    _collection("alpha", 1)
    _collection("beta", 2)
    html = client.get("/").content.decode()
    assert 'href="/c/alpha/"' in html and 'href="/c/beta/"' in html
