"""What an attacker can type or store, and what the site does with it.

Untrusted text (a collection's name and description, trait options and their prompt fragments,
failure reasons and stage details) is escaped on every page and in the admin, stays plain text
in the pinned metadata, and never runs in the browser; the gateway serves stored bytes with a
type that cannot run script; rate limits hold under a burst of concurrent requests; every
form needs its CSRF token; the admin is for staff, each manager limited to their collections.

Personas: Mallory manages the collection "Hostile" and fills every field with markup; Ada and
Bob (from tests/test_admin.py) manage Aurora and Borealis.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connections
from django.test import Client
from playwright.sync_api import expect
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, Anvil
from chain.deployment import CollectionSpec, deploy_collection
from chain.listener import Listener
from generation import events
from generation.models import Collection, Token
from generation.traits import validate_rarity
from ipfs.store import LocalStore
from mintsite.models import ApiKey
from tests.leaky_rpc import LeakyRpc
from tests.people import staff
from tests.test_admin import as_user, make_collection, make_token
from tests.test_listener import mine, mint
from tests.test_metrics import run_worker
from tests.test_pages import (
    STEP,
    Browser,
    _collection,
    _token,
    browser,  # noqa: F401 (a fixture, used by name)
    deploy,
    in_thread,
    publish_all,
    wallet_for,
)

pytestmark = pytest.mark.django_db(transaction=True)
Status = Token.Status

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
PAYLOADS = (SCRIPT, ATTRIBUTE)
# How Django's autoescape writes each payload; a page shows the text, never the markup.
ESCAPED = {
    SCRIPT: "&lt;script&gt;alert(1)&lt;/script&gt;",
    ATTRIBUTE: "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;",
}
HOSTILE_NAME = f"Seeds {SCRIPT}"
HOSTILE_DESCRIPTION = f"Paintings {ATTRIBUTE} and {SCRIPT}"
HOSTILE_RARITY = {
    "mode": "weighted",
    "categories": [
        {
            "name": "palette",
            "verify": False,
            "options": [
                {"name": SCRIPT, "prompt": f"in warm reds {ATTRIBUTE}", "weight": 1},
                {"name": ATTRIBUTE, "prompt": f"in cold blues {SCRIPT}", "weight": 1},
            ],
        }
    ],
}


def assert_escaped(html: str, where: str) -> None:
    """Neither payload appears as markup in ``html``."""
    for raw in ("<script>alert(1)", "<img src=x"):
        assert raw not in html, f"{where}: unescaped {raw!r}"


@pytest.fixture
def hostile(w3: Web3, reference_models: Path, settings) -> Token:  # type: ignore[no-untyped-def]
    """Mallory's collection, deployed and with one token through the real pipeline to FINAL,
    a second token FAILED with a hostile reason, and a stage detail with markup."""
    settings.RENDER_BATCH_SIZE = 1
    collection = deploy(
        w3,
        "hostile",
        name=HOSTILE_NAME,
        description=HOSTILE_DESCRIPTION,
        rarity=HOSTILE_RARITY,
        prompt_template="an abstract painting {palette}, token {token_id}",
    )
    mint(w3, collection, 1)
    (token,) = publish_all(w3, collection)
    failed = _token(collection, 2, Status.FAILED)
    Token.objects.filter(pk=failed.pk).update(failure_reason=f"render crashed: {ATTRIBUTE}")
    events.record([failed.pk], Status.FAILED, f"worker said {SCRIPT}")
    _collection("second", 2)  # with two collections, the home page lists them
    return token


def test_untrusted_text_is_escaped_on_every_page_and_in_the_admin(hostile: Token) -> None:
    token = hostile
    failed = Token.objects.get(collection=token.collection, token_id=2)
    pages = {
        "/": [HOSTILE_NAME, HOSTILE_DESCRIPTION],
        "/c/hostile/": [HOSTILE_NAME, HOSTILE_DESCRIPTION],
        "/c/hostile/gallery/": [HOSTILE_NAME],
        "/c/hostile/tokens/1/": [HOSTILE_NAME, token.traits["palette"]],
        "/c/hostile/tokens/2/": [f"render crashed: {ATTRIBUTE}", f"worker said {SCRIPT}"],
        "/admin/generation/collection/": [HOSTILE_NAME],
        f"/admin/generation/collection/{token.collection.pk}/change/": [SCRIPT, ATTRIBUTE],
        "/admin/generation/token/": [f"render crashed: {ATTRIBUTE}"],
        f"/admin/generation/token/{token.pk}/change/": [token.traits["palette"]],
        f"/admin/generation/token/{failed.pk}/change/": [f"render crashed: {ATTRIBUTE}"],
        "/admin/generation/tokenevent/": [f"worker said {SCRIPT}"],
    }
    client = as_user(staff("root", superuser=True))
    for path, shown in pages.items():
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        assert_escaped(html, path)
        for text in shown:
            escaped = text
            for raw, safe in ESCAPED.items():
                escaped = escaped.replace(raw, safe)
            assert escaped in html, f"{path} does not show {text!r} as text"

    # The prompt, built from the hostile fragments, is shown as text on the token page
    prompt = token.render_record["render"]["prompt"]
    assert any(p in prompt for p in PAYLOADS)
    token_page = client.get("/c/hostile/tokens/1/").content.decode()
    escaped_prompt = prompt.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped_prompt.replace('"', "&quot;") in token_page

    # The mint page hands the name to its script as JSON that no HTML parser reads as markup
    mint_page = client.get("/c/hostile/").content.decode()
    assert '"name": "Seeds \\u003Cscript\\u003Ealert(1)\\u003C/script\\u003E"' in mint_page


def test_the_api_and_the_metadata_keep_untrusted_text_as_plain_json_strings(
    hostile: Token, settings
) -> None:  # type: ignore[no-untyped-def]
    token = hostile
    api = Client().get("/api/collections/hostile/")
    assert api["Content-Type"] == "application/json"
    assert api.json()["name"] == HOSTILE_NAME  # the text itself: escaping is the page's job

    # The pinned metadata, as a marketplace fetches it from the gateway
    response = Client().get(f"/ipfs/{token.metadata_cid}")
    assert response["Content-Type"] == "application/json"
    metadata = json.loads(response.content)
    assert set(metadata) == {
        "name", "description", "image", "external_url", "attributes", "rarity", "provenance"
    }  # fmt: skip
    assert "image_data" not in metadata and "animation_url" not in metadata
    assert metadata["external_url"] == f"{settings.WEB_URL}/c/hostile/tokens/1/"
    assert metadata["image"] == f"ipfs://{token.image_cid}"
    assert metadata["name"] == f"{HOSTILE_NAME} #1"
    assert metadata["description"] == HOSTILE_DESCRIPTION
    assert metadata["attributes"][0]["value"] in PAYLOADS
    # and the image it names is a PNG, served as one
    image = LocalStore(Path(settings.IPFS_STORE_DIR)).get(token.image_cid)
    assert image.startswith(b"\x89PNG")


@pytest.mark.parametrize("key", ["image_data", "animation_url", "external_url"])
def test_a_rarity_table_cannot_add_fields_to_the_metadata(key: str) -> None:
    table = json.loads(json.dumps(HOSTILE_RARITY))
    table["categories"][0]["options"][0][key] = "<svg onload=alert(1)>"
    problems = validate_rarity(table, max_supply=100)
    assert problems == [
        f"categories[0].options[0].{key}: unknown key (allowed: name, prompt, weight)"
    ]


def test_the_mint_page_shows_hostile_text_as_text_in_the_browser(
    w3: Web3,
    anvil: Anvil,
    reference_models: Path,
    browser: Browser,  # noqa: F811 (the fixture imported from test_pages)
    settings,
) -> None:  # type: ignore[no-untyped-def]
    settings.RENDER_BATCH_SIZE = 1
    collection = deploy(
        w3,
        "hostile-browser",
        name=HOSTILE_NAME,
        description=HOSTILE_DESCRIPTION,
        rarity=HOSTILE_RARITY,
        prompt_template="an abstract painting {palette}, token {token_id}",
    )
    page = browser.open("/c/hostile-browser/", wallet_for(anvil))
    dialogs: list[str] = []
    page.context.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.reload()  # now with the dialog listener in place from the start
    expect(page.get_by_role("heading", level=1)).to_have_text(HOSTILE_NAME)
    expect(page.locator(".hero .lead")).to_have_text(HOSTILE_DESCRIPTION)

    # The collector mints; the token goes through the real pipeline and its traits are revealed
    page.get_by_role("button", name="Connect wallet").click()
    page.get_by_role("button", name="Mint").click()
    expect(page.locator("#tx-status")).to_contain_text("Minted token #1", timeout=STEP)
    (token,) = in_thread(lambda: publish_all(w3, collection))
    card = page.locator("#token-1")
    expect(card.locator(".reveal")).to_be_visible(timeout=STEP)
    option = token.traits["palette"]
    expect(card.locator(".traits li")).to_have_text(
        [f"palette: {option} (rarity 50%)"], timeout=STEP
    )
    expect(card.locator("img.token-image")).to_have_attribute("alt", f"{HOSTILE_NAME} #1")

    # Nothing the collection's text carried became an element or ran
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator('script:not([src]):not([type="application/json"])').count() == 0
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    assert dialogs == []


# --- the gateway ------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
XML_SVG = b'<?xml version="1.0"?>\n' + SVG


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (HTML, "application/octet-stream"),
        (SVG, "application/octet-stream"),
        (XML_SVG, "application/octet-stream"),
        (b"  <html>" + PNG, "application/octet-stream"),
        (PNG, "image/png"),
    ],
    ids=["html", "svg", "svg-with-xml-declaration", "html-then-png", "png"],
)
def test_the_gateway_serves_stored_bytes_under_a_type_that_cannot_run_script(
    client: Client, store: LocalStore, content: bytes, content_type: str
) -> None:
    cid = store.add(content)
    response = client.get(f"/ipfs/{cid}")
    assert response.status_code == 200
    assert response.content == content
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"


@pytest.mark.parametrize(
    "path",
    [
        "not-a-cid",
        "bafkrei%3Cscript%3Ealert(1)%3C",
        "QmNotBase58btc0OIl",
        "index.html",
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy.svg",
    ],
)
def test_the_gateway_refuses_a_path_that_is_not_a_cid(
    client: Client, store: LocalStore, path: str
) -> None:
    response = client.get(f"/ipfs/{path}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_cid"
    assert response["X-Content-Type-Options"] == "nosniff"


# --- rate limits under concurrency ------------------------------------------------------------

BURST = 24
LIMIT = 5


@pytest.mark.parametrize("who", ["anonymous", "api-key"])
def test_a_burst_of_concurrent_requests_gets_exactly_the_rate_limit_through(
    live_server, settings, who: str
) -> None:  # type: ignore[no-untyped-def]
    # Given a limit of 5 an hour (one window for the whole test), one client, no count yet
    cache.clear()  # only this run's keys (mintsite.cache): earlier tests' requests counted too
    settings.API_ANON_RATE = settings.API_KEY_RATE = f"{LIMIT}/hour"
    headers: dict[str, str] = {}
    if who == "api-key":
        _, key = ApiKey.issue(_collection("limited", 1), "burst")
        headers["Authorization"] = f"Bearer {key}"
    connections.close_all()  # the server's threads open their own

    # When 24 requests leave at the same moment, from threads of their own
    start = threading.Barrier(BURST)

    def get(_: int) -> httpx.Response:
        with httpx.Client(base_url=live_server.url, headers=headers, timeout=60) as http:
            start.wait()
            return http.get("/api/collections/")

    with ThreadPoolExecutor(BURST) as pool:
        responses = list(pool.map(get, range(BURST)))

    # Then exactly 5 pass, and every other one is told to wait, in the API's error shape
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * LIMIT + [429] * (BURST - LIMIT)
    for response in responses:
        if response.status_code != 429:
            continue
        error = response.json()["error"]
        assert error["code"] == "throttled" and error["status"] == 429
        assert 0 < error["retry_after"] <= 3600
        assert int(response.headers["Retry-After"]) == error["retry_after"]


def test_guessing_api_keys_is_throttled_per_address_even_with_a_fresh_key_each_time(
    live_server, settings
) -> None:  # type: ignore[no-untyped-def]
    # Given at most 3 refused keys an hour per address, and a collection with a real key
    cache.clear()
    settings.API_AUTH_FAILURE_RATE = "3/hour"
    _, valid = ApiKey.issue(_collection("guarded-keys", 1), "studio")
    connections.close_all()
    url = "/api/collections/guarded-keys/webhooks/"

    def post(key: str, source: str = "127.0.0.1") -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(base_url=live_server.url, transport=transport, timeout=60) as http:
            return http.post(url, json={}, headers={"Authorization": f"Bearer {key}"})

    def guess(n: int) -> str:
        return f"mint_{n:08x}_{'x' * 43}"

    # When a client tries three keys, each new, each is refused as unknown
    for n in range(3):
        assert post(guess(n)).status_code == 401
    # Then the fourth fresh guess, and a malformed one, are not checked: 429 with Retry-After
    for key in (guess(3), "not-a-key"):
        response = post(key)
        assert response.status_code == 429, response.text
        error = response.json()["error"]
        assert error["code"] == "throttled" and 0 < error["retry_after"] <= 3600
        assert int(response.headers["Retry-After"]) == error["retry_after"]
    # and a valid key from that address waits too, else a 200 would tell a hit from a guess
    assert post(valid).status_code == 429
    # Public reads without a key are not affected
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        assert http.get("/api/collections/").status_code == 200
    # Another address (loopback has all of 127/8) is counted apart: its valid key works
    assert post(valid, source="127.0.0.2").status_code == 400  # past auth: the body is empty
    assert post(guess(4), source="127.0.0.2").status_code == 401


# --- secrets in failure reasons ---------------------------------------------------------------

RPC_KEY = "k3y-0f-the-studi0s-rpc-pr0vider"


@pytest.fixture
def leaky_chain(w3: Web3, anvil: Anvil) -> Iterator[tuple[Collection, list[int]]]:
    """A deployed collection with two confirmed mints, whose chain's RPC URL carries a key
    (``/v3/<key>``) and answers every contract read with an error quoting it."""
    from chain.models import Chain

    collection = deploy_collection(w3, ANVIL_ACCOUNTS[0].private_key, CollectionSpec(slug="leak"))
    mint(w3, collection, 2)
    mine(w3, 2)
    handed: list[int] = []
    chain = Chain.objects.get(chain_id=collection.chain_id)
    Listener(w3, chain, on_confirmed=lambda c, pks: handed.extend(pks)).poll()
    with LeakyRpc(anvil.rpc_url, RPC_KEY) as rpc:
        Chain.objects.filter(pk=chain.pk).update(rpc_urls=rpc.url)
        yield collection, handed


@pytest.mark.parametrize("stage", ["seed commit", "publish"])
def test_a_stage_that_gives_up_on_an_error_quoting_a_secret_does_not_publish_it(
    leaky_chain: tuple[Collection, list[int]], caplog: pytest.LogCaptureFixture, stage: str
) -> None:
    from chain.tasks import commit_seeds, publish_pending
    from mintsite.observability.logs import ContextFilter

    caplog.handler.addFilter(ContextFilter())  # the context fields, as the console handler has
    collection, pks = leaky_chain
    tokens = Token.objects.filter(pk__in=pks)
    # Given the stage's message, which a worker takes and gives up on (no retry left)
    if stage == "seed commit":
        commit_seeds.send_with_options(args=(collection.pk, pks), max_retries=0)
        expected = "the seed commit gave up after 0 retries: the chain RPC answered with an error"
    else:
        tokens.update(status=Status.PINNED, metadata_sha256="ab" * 32)
        publish_pending.send_with_options(args=(collection.pk,), max_retries=0)
        expected = (
            "the publish gave up after 0 retries: the chain RPC answered with an error "
            "(for now: the tokens stay PINNED and are tried again)"
        )
    connections.close_all()
    run_worker(dramatiq.get_broker(), "io", lambda: all(t.failure_reason for t in tokens.all()))

    # Then the public reason names the stage and the kind of error, and not the key
    token = tokens.get(token_id=1)
    assert token.failure_reason == expected
    api = Client().get(f"/api/collections/leak/tokens/{token.token_id}/").json()
    assert api["failure_reason"] == expected
    page = Client().get(f"/c/leak/tokens/{token.token_id}/").content.decode()
    assert expected in page
    history = Client().get(f"/api/collections/leak/tokens/{token.token_id}/events/").content
    for shown in (json.dumps(api), page, history.decode()):
        assert RPC_KEY not in shown
    # while the log has the error itself, with the collection, for the operator
    logged = [r for r in caplog.records if "the last try's error" in r.getMessage()]
    assert logged and f"/v3/{RPC_KEY}" in logged[0].getMessage()
    assert logged[0].collection == "leak"  # type: ignore[attr-defined]


# --- CSRF -------------------------------------------------------------------------------------


@pytest.fixture
def root_csrf() -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff("root", superuser=True))
    return client


def test_an_admin_action_without_the_csrf_token_is_refused(
    root_csrf: Client, reference_models: Path
) -> None:
    collection = make_collection(reference_models, "guarded")
    token = make_token(collection, 1, Status.FAILED, failure_reason="render crashed")
    action = {"action": "retry", "_selected_action": [token.pk]}

    # A page elsewhere posts the retry action with the admin's session cookie, but no token
    response = root_csrf.post("/admin/generation/token/", action)
    assert response.status_code == 403
    assert b"CSRF" in response.content
    token.refresh_from_db()
    assert token.status == Status.FAILED

    # and an edit of the collection likewise
    response = root_csrf.post(
        f"/admin/generation/collection/{collection.pk}/change/", {"name": "renamed"}
    )
    assert response.status_code == 403
    assert Collection.objects.get(pk=collection.pk).name == "Guarded"

    # The admin's own form, with the token from its page, is accepted
    root_csrf.get("/admin/generation/token/")
    csrf = root_csrf.cookies["csrftoken"].value
    response = root_csrf.post("/admin/generation/token/", {**action, "csrfmiddlewaretoken": csrf})
    assert response.status_code == 302


def test_the_api_takes_no_session_cookie_for_writes(root_csrf: Client) -> None:
    # A superuser's session means nothing to the API: writes need the collection's API key
    collection = _collection("cookies", 3)
    _token(collection, 1, Status.FAILED)
    response = root_csrf.post(
        "/api/collections/cookies/tokens/1/requeue/", {}, content_type="application/json"
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_required"


# --- the admin is for staff, each manager limited to their collections -----------------------


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/generation/collection/", "/admin/generation/token/"]
)
def test_a_user_who_is_not_staff_is_sent_to_the_login_page(path: str) -> None:
    collector = User.objects.create_user("carol", "carol@example.com", None)
    client = Client()
    client.force_login(collector)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_manager_cannot_act_on_another_collections_tokens(reference_models: Path) -> None:
    ada, bob = staff("ada"), staff("bob")
    make_collection(reference_models, "aurora", [ada])
    borealis = make_collection(reference_models, "borealis", [bob])
    theirs = make_token(borealis, 1, Status.FAILED, failure_reason="render crashed")
    client = as_user(ada)

    # Ada posts the retry action on Bob's token, and an edit of his collection
    client.post("/admin/generation/token/", {"action": "retry", "_selected_action": [theirs.pk]})
    edit: dict[str, Any] = {"name": "taken over", "description": "mine now"}
    response = client.post(f"/admin/generation/collection/{borealis.pk}/change/", edit)

    # Nothing of Bob's changed
    assert response.status_code in (302, 403)
    theirs.refresh_from_db()
    assert theirs.status == Status.FAILED
    borealis.refresh_from_db()
    assert (borealis.name, borealis.description) == ("Borealis", "")
