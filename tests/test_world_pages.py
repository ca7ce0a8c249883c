"""The reference world's tokens on the collector's pages, as Chromium shows them (issue 16).

The collection ``make run`` deploys (``reference_world_spec``: the trained models, the rarity
table, the calibrated gate) on a real anvil; tokens go through the real stages in-process
(listener, seed commit, render and CLIP gate on the committed weights, pin, publish), as in
tests/test_pages.py, whose browser and wallet this module drives. Then each token's image is
taken as the browser painted it (an element screenshot of the ``<img>``, at the page's CSS size)
and the world's pixel oracle, which shares nothing with the gate, reads its traits: they must
be the traits the page lists next to it, the token's metadata ``attributes`` and its record.
A wrong image, a placeholder, a broken image or the untrained models' noise reads otherwise
(the oracle answers ``None`` for what it cannot see), and so fails.

The chain is the one of tests/test_reference_world_gate.py (fixed genesis time, one second per
block), so the same tokens are drawn and rendered every run: the mints go on until one is
legendary, which is published with the first ``COMMONS`` commons; the collector then mints one
more on the mint page and watches it revealed.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from PIL import Image
from playwright.sync_api import Locator, Page, expect
from web3 import Web3

from chain import publishing
from chain.anvil import Anvil
from chain.deployment import deploy_collection, reference_world_spec
from chain.seed_commit import commit_seeds
from generation import pipeline, torch_threads
from generation.models import Collection, Token
from generation.reference_world.oracle import read_traits
from generation.reference_world.world import CATEGORIES, IMAGE_SIZE, RARE_CATEGORY, RARE_OPTION
from generation.reference_world.world import world_traits as draw_traits
from ipfs.store import LocalStore
from tests.test_listener import mine, mint
from tests.test_pages import (
    DEPLOYER,
    STEP,
    Browser,
    browser,  # noqa: F401 (a fixture, used by name)
    in_thread,
    listen,
    wallet_for,
)
from tests.test_reference_world_gate import anvil  # noqa: F401 (the same tokens every run)

pytestmark = pytest.mark.django_db(transaction=True)
Status = Token.Status
SLUG = "world-pages"
COMMONS = 2
MINT_BATCH = 10
MAX_MINTED = 200
# The least a token's image may be shown at, per side: twice the 64 pixels it was rendered at.
LEAST_SHOWN = 2 * IMAGE_SIZE


def mint_until_legendary(w3: Web3, collection: Collection) -> list[int]:
    """Mint until a minted token draws the legendary edition; the pks of the first legendary
    and the first ``COMMONS`` commons, by token id (the rest stay unrendered)."""
    drawn: dict[int, tuple[int, dict[str, str]]] = {}  # token id → (pk, traits)
    while len(drawn) < MAX_MINTED:
        mint(w3, collection, MINT_BATCH)
        mine(w3, 2)
        for token in Token.objects.filter(pk__in=listen(w3, collection)):
            seed = bytes.fromhex(token.expected_seed.removeprefix("0x"))
            drawn[token.token_id] = (token.pk, draw_traits(seed))
        ids = sorted(drawn)
        legendary = [i for i in ids if drawn[i][1][RARE_CATEGORY] == RARE_OPTION]
        if legendary:
            common = [i for i in ids if i not in legendary][:COMMONS]
            return [drawn[i][0] for i in sorted(legendary[:1] + common)]
    pytest.fail(f"no legendary among {len(drawn)} mints")


def drive(w3: Web3, collection: Collection, pks: list[int]) -> list[Token]:
    """The confirmed tokens ``pks`` through every stage to FINAL."""
    commit_seeds(w3, collection, pks, lambda token: None)
    for pk in pks:
        status = pipeline.run_render(pk)
        token = Token.objects.get(pk=pk)
        assert status == Status.RENDERED, f"token {token.token_id}: {token.failure_reason}"
        assert pipeline.run_pin(pk) == Status.PINNED
    assert sorted(publishing.publish_batch(collection.pk).published) == sorted(pks)
    mine(w3, 2)
    listen(w3, collection)
    tokens = list(Token.objects.filter(pk__in=pks).order_by("token_id"))
    assert [t.status for t in tokens] == [Status.FINAL] * len(pks)
    return tokens


def metadata_of(token: Token) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        LocalStore(Path(settings.IPFS_STORE_DIR)).get(token.metadata_cid)
    )
    return document


def in_table_order(traits: dict[str, str]) -> list[tuple[str, str]]:
    return [(category, traits[category]) for category in CATEGORIES]


def seen(image: Locator) -> dict[str, str | None]:
    """What the oracle reads in ``image`` as the browser painted it: the page's pixels inside
    the element's box (rounded inwards: at a fractional position an element screenshot takes in
    a line of the card's border, which the oracle would rightly call part of the image)."""
    image.scroll_into_view_if_needed()
    image.page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=STEP
    )
    box = image.bounding_box()
    assert box is not None, "the image is not displayed"
    left, top = math.ceil(box["x"]), math.ceil(box["y"])
    right, bottom = math.floor(box["x"] + box["width"]), math.floor(box["y"] + box["height"])
    png = image.page.screenshot(
        clip={"x": left, "y": top, "width": right - left, "height": bottom - top}
    )
    with Image.open(io.BytesIO(png)) as shot:
        assert min(shot.size) >= LEAST_SHOWN, f"shown at {shot.size}: too small to recognise"
        return read_traits(shot.convert("RGB")).traits


def check_cards(page: Page, tokens: list[Token]) -> None:
    """Each token's card (gallery, recently published): its image shows the traits it lists."""
    for token in tokens:
        card = page.locator(f'.card:has(a[href$="/tokens/{token.token_id}/"])')
        expect(card).to_have_count(1)
        image = card.locator("img")
        expect(image).to_have_attribute("src", f"{settings.IPFS_GATEWAY_URL}/{token.image_cid}")
        listed = " · ".join(value for _, value in in_table_order(token.traits))
        expect(card.locator(".card-traits")).to_have_text(listed)
        assert seen(image) == token.traits, f"{page.url}: token {token.token_id}"


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Renders on one thread. With torch's default pool (one thread a core), a 64×64 render took
    90-115 s instead of 0.8 s on a 2-core machine whose cores other processes kept busy: the
    pool's threads wait on each other at every operation."""
    with torch_threads.one_torch_thread():
        yield


def test_every_page_shows_each_world_token_as_an_image_of_the_traits_it_lists(
    one_torch_thread: None,
    w3: Web3,
    anvil: Anvil,  # noqa: F811 (the fixture imported from test_reference_world_gate)
    browser: Browser,  # noqa: F811 (the fixture imported from test_pages)
    settings,
) -> None:  # type: ignore[no-untyped-def]
    settings.RENDER_BATCH_SIZE = 1
    # Given the reference world's collection with a legendary and commons published
    collection = deploy_collection(w3, DEPLOYER.private_key, reference_world_spec(slug=SLUG))
    tokens = drive(w3, collection, mint_until_legendary(w3, collection))
    editions = [token.traits[RARE_CATEGORY] for token in tokens]
    assert editions.count(RARE_OPTION) == 1, editions
    # the metadata lists the traits the token was drawn and rendered with
    for token in tokens:
        attributes = metadata_of(token)["attributes"]
        assert [(a["trait_type"], a["value"]) for a in attributes] == in_table_order(token.traits)
    assert len({json.dumps(token.traits, sort_keys=True) for token in tokens}) == len(tokens)

    # The mint page's recently published cards show them
    page = browser.open(f"/c/{SLUG}/", wallet_for(anvil))
    expect(page.get_by_role("heading", name="Recently published")).to_be_visible()
    check_cards(page, tokens)

    # When the collector mints one more and the pipeline takes it to FINAL
    page.get_by_role("button", name="Connect wallet").click()
    page.get_by_role("button", name="Mint").click()
    expect(page.locator("#tx-status")).to_contain_text("Minted token #", timeout=STEP)
    token_id = int(re.findall(r"#(\d+)", page.locator("#tx-status").inner_text())[0])

    def confirm_and_drive() -> Token:
        mine(w3, 2)
        (pk,) = listen(w3, collection)
        (token,) = drive(w3, collection, [pk])
        return token

    minted = in_thread(confirm_and_drive)
    assert minted.token_id == token_id
    assert [(a["trait_type"], a["value"]) for a in metadata_of(minted)["attributes"]] == (
        in_table_order(minted.traits)
    )

    # Then the mint page reveals an image of the traits it lists
    reveal = page.locator(f"#token-{token_id}")
    expect(reveal.locator(".badge")).to_have_text("final", timeout=STEP)
    expect(reveal.locator(".traits li")).to_have_text(
        [re.compile(rf"^{k}: {v} \(rarity [\d.]+%\)$") for k, v in in_table_order(minted.traits)]
    )
    image = reveal.locator("img.token-image")
    expect(image).to_have_attribute("src", f"{settings.IPFS_GATEWAY_URL}/{minted.image_cid}")
    assert seen(image) == minted.traits

    # and the gallery shows every token, the token pages each one with its attributes
    tokens.append(minted)
    page.goto(f"{browser.base_url}/c/{SLUG}/gallery/")
    expect(page.locator(".lead")).to_have_text(f"{len(tokens)} published tokens.")
    check_cards(page, tokens)
    for token in tokens:
        page.goto(f"{browser.base_url}/c/{SLUG}/tokens/{token.token_id}/")
        rows = page.locator("table.attributes tbody tr")
        expect(rows.locator("th")).to_have_text([k for k, _ in in_table_order(token.traits)])
        expect(rows.locator("td:nth-of-type(1)")).to_have_text(
            [v for _, v in in_table_order(token.traits)]
        )
        image = page.locator("img.token-image.large")
        expect(image).to_have_attribute("src", f"{settings.IPFS_GATEWAY_URL}/{token.image_cid}")
        assert seen(image) == token.traits, f"{page.url}: token {token.token_id}"
