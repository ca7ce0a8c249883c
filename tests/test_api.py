"""The REST API as an integrator sees it: lists, documents, live progress, errors, keys."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from devtools.rarity_fixtures import WEIGHTED
from generation import events
from generation.canonical import canonical_json
from generation.metadata import build_metadata
from generation.models import Collection, Token
from ipfs.cid import compute_cid, compute_raw_cid
from mintsite.models import ApiKey, WebhookSubscription

Status = Token.Status
ALICE = "0x" + "aB" * 20  # a collector, stored checksum-cased
BOB = "0x" + "11" * 20
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels"


# --- data, shared with test_webhooks.py and test_api_fuzz.py ---------------------------------


def make_collection(slug: str, address: int, **fields: Any) -> Collection:
    return Collection.objects.create(
        slug=slug,
        name=slug.title(),
        chain_id=31337,
        contract_address=f"0x{address:040x}",
        model_dir="m",
        clip_dir="c",
        prompt_template="an abstract painting {palette}",
        style_prompt="an abstract painting",
        clip_threshold=0.2,
        max_supply=100,
        rarity=WEIGHTED,
        **fields,
    )


def make_token(
    collection: Collection, token_id: int, status: str = Status.CONFIRMED, **fields: Any
) -> Token:
    fields.setdefault("owner", BOB)
    return Token.objects.create(
        collection=collection,
        token_id=token_id,
        mint_tx_hash=f"0x{token_id:064x}",
        mint_log_index=0,
        mint_block_number=10 + token_id,
        mint_block_hash="0x" + "22" * 32,
        expected_seed="0x" + "44" * 32,
        status=status,
        **fields,
    )


def render_record(traits: dict[str, str]) -> dict[str, Any]:
    return {
        "attempt": 0,
        "torch_seed": 12345,
        "model": {
            "fingerprint": "sha256:" + "ab" * 32,
            "format": "diffusers",
            "scheduler": "PNDMScheduler",
            "dtype": "float32",
            "device": "cpu",
        },
        "render": {
            "prompt": "an abstract painting in warm reds",
            "negative_prompt": "",
            "steps": 2,
            "guidance": 7.5,
            "width": 64,
            "height": 64,
        },
        "clip": {
            "model_fingerprint": "sha256:" + "cd" * 32,
            "scores": {"style": 0.31},
            "thresholds": {"style": 0.2},
        },
        "traits": traits,
        "software": {"mint-on-demand": "0.1.0"},
    }


def published_token(collection: Collection, token_id: int, **fields: Any) -> Token:
    """A token as the pipeline leaves it once published, its metadata digest consistent."""
    traits = {"palette": "warm"}
    token = make_token(
        collection,
        token_id,
        Status.PUBLISHED,
        seed="0x" + "44" * 32,
        traits=traits,
        render_record=render_record(traits),
        image_sha256=hashlib.sha256(PNG).hexdigest(),
        image_cid=compute_cid(PNG),
        clip_scores=render_record(traits)["clip"],
        publish_tx_hash="0x" + "55" * 32,
        **fields,
    )
    metadata = canonical_json(build_metadata(token, token.image_cid))
    Token.objects.filter(pk=token.pk).update(
        metadata_sha256=hashlib.sha256(metadata).hexdigest(),
        metadata_cid=compute_raw_cid(metadata),
    )
    token.refresh_from_db()
    return token


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == response.status_code
    return body["error"]


@pytest.fixture(autouse=True)
def fresh_throttle() -> Iterator[None]:
    """Throttle counts live in the cache: each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def alpha(db: None) -> Collection:
    return make_collection("alpha", 1)


@pytest.fixture
def beta(db: None) -> Collection:
    return make_collection("beta", 2)


# --- collections -----------------------------------------------------------------------------


def test_it_lists_collections_with_their_rarity_and_state(
    client: Client, alpha: Collection, beta: Collection
) -> None:
    Collection.objects.filter(pk=beta.pk).update(paused=True, config_digest="0x" + "99" * 32)
    make_token(alpha, 1)
    make_token(alpha, 2, Status.REORGED)
    published_token(alpha, 3)
    page = client.get("/api/collections/").json()
    assert [c["slug"] for c in page["results"]] == ["alpha", "beta"]
    first, second = page["results"]
    assert first["contract"] == "0x" + "0" * 39 + "1"
    assert first["chain_id"] == 31337 and first["max_supply"] == 100
    assert first["tokens"]["minted"] == 2 and first["tokens"]["published"] == 1
    assert first["tokens"]["by_status"]["REORGED"] == 1
    assert not first["frozen"] and first["config_digest"] is None
    assert second["paused"] and second["frozen"] and second["config_digest"] == "0x" + "99" * 32
    options = first["rarity"]["categories"][0]["options"]
    assert [(o["name"], o["probability"]) for o in options] == [("warm", 0.75), ("cold", 0.25)]
    assert client.get("/api/collections/beta/").json()["paused"] is True


def test_it_serves_a_collections_rarity_table(client: Client, alpha: Collection) -> None:
    table = client.get("/api/collections/alpha/rarity/").json()
    assert table["mode"] == "weighted" and table["max_supply"] == 100
    palette = table["categories"][0]
    assert palette["name"] == "palette" and palette["verify"] is False
    assert palette["options"][1] == {
        "name": "cold",
        "prompt": "in cold blues",
        "weight": 1,
        "probability": 0.25,
    }


# --- tokens ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [("alpha", 1), ("alpha", 2), ("alpha", 3), ("beta", 1)]),
        ("?status=FAILED", [("alpha", 2)]),
        ("?status=failed,published", [("alpha", 2), ("alpha", 3)]),
        (f"?owner={ALICE.lower()}", [("alpha", 1), ("beta", 1)]),
        (f"?owner={ALICE.upper().replace('0X', '0x')}&collection=beta", [("beta", 1)]),
        ("?collection=beta&status=CONFIRMED", []),
    ],
)
def test_it_filters_tokens_by_status_owner_and_collection(
    client: Client, alpha: Collection, beta: Collection, query: str, expected: list[Any]
) -> None:
    make_token(alpha, 1, owner=ALICE)
    make_token(alpha, 2, Status.FAILED, failure_reason="render failed")
    published_token(alpha, 3)
    make_token(beta, 1, Status.RENDERING, owner=ALICE)
    page = client.get(f"/api/tokens/{query}").json()
    assert [(t["collection"], t["token_id"]) for t in page["results"]] == expected
    assert page["count"] == len(expected)


def test_it_pages_through_tokens_in_a_stable_order(client: Client, alpha: Collection) -> None:
    for token_id in (5, 3, 1, 4, 2):
        make_token(alpha, token_id)
    seen, url = [], "/api/collections/alpha/tokens/?page_size=2"
    while url:
        page = client.get(url).json()
        assert page["count"] == 5 and page["pages"] == 3
        seen += [t["token_id"] for t in page["results"]]
        url = page["next"]
    assert seen == [1, 2, 3, 4, 5]
    missing = client.get("/api/collections/alpha/tokens/?page=4&page_size=2")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "page_not_found"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=BOGUS", "status"),
        ("owner=alice", "owner"),
        ("page=0", "page"),
        ("page_size=100000", "page_size"),
        ("page=two", "page"),
    ],
)
def test_it_refuses_bad_filters_naming_the_field(
    client: Client, alpha: Collection, query: str, field: str
) -> None:
    response = client.get(f"/api/tokens/?{query}")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_request"
    assert list(error["fields"]) == [field]
    assert field in error["message"]


def test_it_shows_a_rendered_tokens_traits_with_rarity_and_its_stages(
    client: Client, alpha: Collection
) -> None:
    token = make_token(alpha, 7, Status.RENDERED, traits={"palette": "cold"}, attempt=1)
    events.record([token.pk], Status.SEED_COMMITTED, "seed 0x44")
    events.record([token.pk], Status.RENDERING, "attempt 0")
    events.record([token.pk], Status.RENDERED, "attempt 1 passed the CLIP gate")
    doc = client.get("/api/collections/alpha/tokens/7/").json()
    assert doc["status"] == "RENDERED" and doc["attempt"] == 1
    assert doc["traits"] == {"palette": "cold"}
    assert doc["attributes"] == [{"trait_type": "palette", "value": "cold"}]  # as published
    assert doc["rarity"]["traits"]["palette"]["probability"] == 0.25
    assert doc["rarity"]["score"] == pytest.approx(2.0)  # -log2(1/4)
    assert [e["status"] for e in doc["events"]] == ["SEED_COMMITTED", "RENDERING", "RENDERED"]
    assert "token_uri" not in doc  # not published yet
    history = client.get("/api/collections/alpha/tokens/7/events/").json()
    assert history[-1]["detail"] == "attempt 1 passed the CLIP gate"
    assert set(history[0]) == {"status", "detail", "at"}


def test_it_keeps_the_published_fields_of_the_token_document(
    client: Client, alpha: Collection
) -> None:
    token = published_token(alpha, 3)
    doc = client.get("/api/tokens/3/").json()
    assert doc["token_uri"] == f"ipfs://{token.metadata_cid}"
    assert doc["image_url"].endswith(f"/ipfs/{token.image_cid}")
    assert doc["clip_scores"] == {"style": 0.31} and doc["clip_thresholds"] == {"style": 0.2}
    assert doc["seed"] == token.seed and doc["publish_tx"] == token.publish_tx_hash


def test_it_serves_provenance_once_the_token_is_published(
    client: Client, alpha: Collection
) -> None:
    make_token(alpha, 1, Status.PINNED)
    early = client.get("/api/collections/alpha/tokens/1/provenance/")
    assert early.status_code == 404
    assert error_of(early)["code"] == "provenance_not_published"
    token = published_token(alpha, 2)
    body = client.get("/api/collections/alpha/tokens/2/provenance/").json()
    assert body["metadata_sha256"] == token.metadata_sha256
    assert body["token_uri"] == token.token_uri
    provenance = body["provenance"]
    assert provenance["seed"] == token.seed and provenance["torch_seed"] == "12345"
    assert provenance["model"]["fingerprint"] == "sha256:" + "ab" * 32
    assert provenance == build_metadata(token, token.image_cid)["provenance"]


# --- cheap polling, long polling, streaming --------------------------------------------------


def test_it_answers_not_modified_while_a_token_is_unchanged(
    client: Client, alpha: Collection
) -> None:
    token = make_token(alpha, 1, Status.RENDERING)
    url = "/api/collections/alpha/tokens/1/"
    first = client.get(url)
    etag = first["ETag"]
    unchanged = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304 and unchanged.content == b""
    listing = client.get("/api/tokens/")
    assert client.get("/api/tokens/", HTTP_IF_NONE_MATCH=listing["ETag"]).status_code == 304

    Token.objects.filter(pk=token.pk).update(status=Status.RENDERED)
    events.record([token.pk], Status.RENDERED)
    changed = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed.json()["status"] == "RENDERED"
    assert changed["ETag"] != etag
    assert client.get("/api/tokens/", HTTP_IF_NONE_MATCH=listing["ETag"]).status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda pk: Token.objects.filter(pk=pk).update(attempt=1), id="a field"),
        pytest.param(lambda pk: events.record([pk], Status.RENDERING, "again"), id="an event"),
    ],
)
def test_every_change_to_a_token_ends_its_not_modified_answers(
    client: Client, alpha: Collection, change: Any
) -> None:
    # a 304 is answered from the token's version alone: a change of any field (through the
    # pipeline's conditional UPDATEs) or a new stage event must end it
    token = make_token(alpha, 1, Status.RENDERING)
    url = "/api/collections/alpha/tokens/1/"
    first = client.get(url)
    assert client.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    change(token.pk)
    after = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert after.status_code == 200 and after["ETag"] != first["ETag"]
    assert after.json() != first.json()
    assert client.get(url, HTTP_IF_NONE_MATCH=after["ETag"]).status_code == 304


def test_it_answers_a_long_poll_at_once_when_the_client_is_behind(
    client: Client, alpha: Collection
) -> None:
    make_token(alpha, 1, Status.PINNED)
    response = client.get("/api/collections/alpha/tokens/1/?wait=30&since=RENDERED")
    assert response.status_code == 200 and response.json()["status"] == "PINNED"


def test_it_ends_a_long_poll_with_not_modified_when_nothing_moved(
    client: Client, alpha: Collection, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.API_RECHECK_SECONDS = 0.05
    make_token(alpha, 1, Status.RENDERING)
    response = client.get("/api/collections/alpha/tokens/1/?wait=1&since=RENDERING")
    assert response.status_code == 304
    assert response["ETag"]


@pytest.mark.django_db(transaction=True)
def test_it_answers_a_long_poll_when_the_status_changes(client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.API_RECHECK_SECONDS = 0.05
    token = make_token(make_collection("alpha", 1), 1, Status.RENDERING)

    def pipeline_moves_it() -> None:
        try:
            time.sleep(0.3)
            Token.objects.filter(pk=token.pk).update(status=Status.RENDERED)
            events.record([token.pk], Status.RENDERED, "attempt 0 passed the CLIP gate")
        finally:
            connection.close()

    worker = threading.Thread(target=pipeline_moves_it)
    worker.start()
    etag = client.get("/api/tokens/1/")["ETag"]
    response = client.get("/api/tokens/1/?wait=20", HTTP_IF_NONE_MATCH=etag)
    worker.join()
    assert response.status_code == 200
    assert response.json()["status"] == "RENDERED"
    assert response.json()["events"][-1]["detail"] == "attempt 0 passed the CLIP gate"


def sse_events(response: Any) -> Iterator[tuple[str, Any]]:
    """(event, data) of each event of a streaming response, comments and retry lines skipped."""
    for chunk in response.streaming_content:
        text = chunk.decode()
        fields = dict(
            line.split(": ", 1) for line in text.strip().splitlines() if not line.startswith(":")
        )
        if "event" in fields:
            yield fields["event"], json.loads(fields["data"])


def test_it_streams_each_stage_and_ends_at_a_terminal_status(
    client: Client, alpha: Collection, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.API_RECHECK_SECONDS = 0.01
    token = make_token(alpha, 1, Status.SEED_COMMITTED)
    events.record([token.pk], Status.SEED_COMMITTED)
    response = client.get(
        "/api/collections/alpha/tokens/1/stream/", HTTP_ACCEPT="text/event-stream"
    )
    assert response["Content-Type"] == "text/event-stream"
    stream = sse_events(response)
    assert next(stream) == ("token", client.get("/api/tokens/1/").json())

    # When the pipeline moves the token, the stream sends the new document.
    Token.objects.filter(pk=token.pk).update(status=Status.RENDERING)
    events.record([token.pk], Status.RENDERING, "attempt 0")
    kind, doc = next(stream)
    assert kind == "token" and doc["status"] == "RENDERING"
    assert (doc["events"][-1]["status"], doc["events"][-1]["detail"]) == ("RENDERING", "attempt 0")

    # A terminal status is sent, then the stream ends.
    Token.objects.filter(pk=token.pk).update(status=Status.FAILED, failure_reason="boom")
    events.record([token.pk], Status.FAILED, "boom")
    assert next(stream)[1]["failure_reason"] == "boom"
    assert next(stream) == ("end", {"status": "FAILED"})
    assert list(stream) == []
    response.close()


def test_it_closes_a_stream_after_its_lifetime(client: Client, alpha: Collection, settings) -> None:  # type: ignore[no-untyped-def]
    settings.API_RECHECK_SECONDS = 0.01
    settings.API_STREAM_MAX_SECONDS = 0.2
    make_token(alpha, 1, Status.RENDERING)
    response = client.get("/api/collections/alpha/tokens/1/stream/")
    chunks = b"".join(response.streaming_content).decode()
    assert chunks.count("event: token") == 1
    assert "reconnect" in chunks and "event: end" not in chunks


def test_it_ends_the_stream_of_a_token_already_final(client: Client, alpha: Collection) -> None:
    published_token(alpha, 1)
    Token.objects.filter(collection=alpha).update(status=Status.FINAL)
    response = client.get("/api/collections/alpha/tokens/1/stream/")
    assert [kind for kind, _ in sse_events(response)] == ["token", "end"]


@pytest.mark.parametrize("last_event_id", ["²", "١٢", "-1", "abc", "9" * 40])
def test_it_streams_from_the_start_when_last_event_id_is_not_an_event_id(
    client: Client, alpha: Collection, last_event_id: str
) -> None:
    # "²" and Arabic-Indic digits are digits to str.isdigit() but not to int(): they were a 500
    published_token(alpha, 1)
    Token.objects.filter(collection=alpha).update(status=Status.FINAL)
    response = client.get(
        "/api/collections/alpha/tokens/1/stream/", headers={"Last-Event-ID": last_event_id}
    )
    assert response.status_code == 200
    assert [kind for kind, _ in sse_events(response)] == ["token", "end"]


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/collections/nope/", 404, "collection_not_found"),
        ("get", "/api/collections/nope/tokens/1/", 404, "collection_not_found"),
        ("get", "/api/collections/alpha/tokens/99/", 404, "token_not_found"),
        ("get", "/api/collections/alpha/tokens/99/stream/", 404, "token_not_found"),
        ("get", f"/api/collections/alpha/tokens/{2**70}/", 404, "token_not_found"),
        ("get", "/api/nothing/here/", 404, "not_found"),
        ("get", "/api/tokens", 404, "not_found"),
        ("delete", "/api/tokens/", 405, "method_not_allowed"),
        ("post", "/api/collections/alpha/", 405, "method_not_allowed"),
        ("get", "/api/tokens/1/?wait=9999&since=X", 400, "invalid_request"),
    ],
)
def test_it_answers_errors_as_json_with_a_stable_code(
    client: Client, alpha: Collection, method: str, path: str, status: int, code: str
) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = error_of(response)
    assert error["code"] == code
    assert error["message"]


def test_it_says_which_path_was_meant_without_its_trailing_slash(client: Client, db: None) -> None:
    assert "did you mean /api/tokens/" in error_of(client.get("/api/tokens"))["message"]


def test_it_names_an_ambiguous_token_id(
    client: Client, alpha: Collection, beta: Collection
) -> None:
    make_token(beta, 1)
    response = client.get("/api/tokens/1/")
    assert response.status_code == 400
    assert error_of(response)["code"] == "ambiguous_collection"
    assert client.get("/api/tokens/1/?collection=beta").json()["collection"] == "beta"


def test_it_answers_an_unexpected_failure_as_json_without_the_traceback(
    client: Client, alpha: Collection
) -> None:
    # Data no code path writes (scores stored as a list) make the document fail to build.
    published_token(alpha, 1)
    Token.objects.filter(collection=alpha).update(clip_scores=[0.3])
    response = client.get("/api/collections/alpha/tokens/1/")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "server_error"
    assert "Traceback" not in error["message"] and "AttributeError" not in error["message"]


def test_it_throttles_anonymous_clients(client: Client, alpha: Collection, settings) -> None:  # type: ignore[no-untyped-def]
    settings.API_ANON_RATE = "3/min"
    for _ in range(3):
        assert client.get("/api/collections/").status_code == 200
    response = client.get("/api/collections/alpha/")
    assert response.status_code == 429
    error = error_of(response)
    assert error["code"] == "throttled" and 0 < error["retry_after"] <= 60
    assert int(response["Retry-After"]) == error["retry_after"]
    # a key holder is counted apart, per key
    _, key = ApiKey.issue(alpha, "studio site")
    assert client.get("/api/collections/", **bearer(key)).status_code == 200


def test_a_spoofed_x_forwarded_for_does_not_buy_a_fresh_rate_limit(  # type: ignore[no-untyped-def]
    client: Client, alpha: Collection, settings
) -> None:
    # Given no proxy in front (API_NUM_PROXIES unset): the client is its socket address
    settings.API_ANON_RATE = "3/min"
    for n in range(3):
        spoofed = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert client.get("/api/collections/", headers=spoofed).status_code == 200
    # When it claims yet another address, it is still the same client, and throttled
    response = client.get("/api/collections/", headers={"X-Forwarded-For": "198.51.100.7"})
    assert response.status_code == 429


# --- API keys and writes ---------------------------------------------------------------------


def test_it_creates_api_keys_from_the_command(alpha: Collection, capsys) -> None:  # type: ignore[no-untyped-def]
    call_command("create_api_key", "alpha", "studio site")
    key = capsys.readouterr().out.strip()
    row = ApiKey.objects.get()
    assert row.collection == alpha and row.name == "studio site"
    assert key.startswith(f"mint_{row.prefix}_") and row.matches(key)
    assert key not in (row.secret_hash, row.prefix)  # only its hash is kept
    with pytest.raises(CommandError, match="no collection 'gamma'; known: alpha"):
        call_command("create_api_key", "gamma", "x")


def test_it_requires_an_api_key_of_the_collection_for_writes(
    client: Client, alpha: Collection, beta: Collection
) -> None:
    _, alpha_key = ApiKey.issue(alpha, "alpha site")
    revoked, revoked_key = ApiKey.issue(alpha, "old")
    ApiKey.objects.filter(pk=revoked.pk).update(revoked=True)
    body = {"url": "https://example.org/hooks", "event_types": ["token.published"]}
    url = "/api/collections/beta/webhooks/"

    def post(**headers: str) -> Any:
        return client.post(url, body, content_type="application/json", **headers)

    anonymous = post()
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    assert error_of(anonymous)["code"] == "api_key_required"
    assert error_of(post(**bearer("mint_x")))["code"] == "invalid_api_key"
    assert error_of(post(**bearer(alpha_key[:-2] + "xx")))["code"] == "invalid_api_key"
    assert error_of(post(**bearer(revoked_key)))["code"] == "api_key_revoked"
    assert error_of(post(HTTP_AUTHORIZATION="Basic YTpi"))["code"] == "invalid_authorization"
    wrong = post(**bearer(alpha_key))
    assert wrong.status_code == 403
    assert error_of(wrong)["code"] == "wrong_collection"
    assert "belongs to collection 'alpha', not 'beta'" in error_of(wrong)["message"]
    assert not WebhookSubscription.objects.exists()

    make_token(beta, 1, Status.FAILED)
    requeue = client.post("/api/collections/beta/tokens/1/requeue/", **bearer(alpha_key))
    assert requeue.status_code == 403
    assert Token.objects.get(collection=beta).status == Status.FAILED


def test_it_manages_webhook_subscriptions_with_a_key(client: Client, alpha: Collection) -> None:
    _, key = ApiKey.issue(alpha, "studio site")
    auth = bearer(key)
    created = client.post(
        "/api/collections/alpha/webhooks/",
        {"url": "https://studio.example/hooks", "event_types": ["token.published", "token.failed"]},
        content_type="application/json",
        **auth,
    )
    assert created.status_code == 201
    subscription = created.json()
    assert subscription["secret"].startswith("whsec_")  # shown this once
    assert subscription["active"] is True
    url = f"/api/collections/alpha/webhooks/{subscription['id']}/"
    shown = client.get(url, **auth).json()
    assert "secret" not in shown
    listed = client.get("/api/collections/alpha/webhooks/", **auth).json()
    assert [s["id"] for s in listed["results"]] == [subscription["id"]]

    patched = client.patch(url, {"active": False}, content_type="application/json", **auth)
    assert patched.json()["active"] is False
    assert patched.json()["event_types"] == ["token.published", "token.failed"]
    deliveries = client.get(url + "deliveries/", **auth).json()
    assert deliveries["count"] == 0
    assert client.delete(url, **auth).status_code == 204
    assert client.get(url, **auth).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://x.example/h", "event_types": ["token.minted"]}, "event_types[0]"),
        ({"url": "https://x.example/h", "event_types": []}, "event_types"),
        ({"url": "ftp://x.example/h", "event_types": ["token.stage"]}, "url"),
        ({"url": "not a url", "event_types": ["token.stage"]}, "url"),
        # Django's URL rules take it; the client that delivers it does not (an IDNA error)
        ({"url": "http://\u2603.com/", "event_types": ["token.stage"]}, "url"),
        ({"event_types": ["token.stage"]}, "url"),
        (
            {"url": "https://x.example/h", "event_types": ["token.stage", "token.stage"]},
            "event_types",
        ),
    ],
)
def test_it_refuses_an_invalid_subscription_naming_the_field(
    client: Client, alpha: Collection, body: dict[str, Any], field: str
) -> None:
    _, key = ApiKey.issue(alpha, "studio site")
    response = client.post(
        "/api/collections/alpha/webhooks/", body, content_type="application/json", **bearer(key)
    )
    assert response.status_code == 400
    assert field in error_of(response)["fields"]


def test_it_refuses_a_body_that_is_not_json(client: Client, alpha: Collection) -> None:
    _, key = ApiKey.issue(alpha, "studio site")
    url = "/api/collections/alpha/webhooks/"
    broken = client.post(url, "{not json", content_type="application/json", **bearer(key))
    assert error_of(broken)["code"] == "malformed_json"
    form = client.post(url, {"url": "x"}, **bearer(key))  # multipart
    assert form.status_code == 415
    assert error_of(form)["code"] == "unsupported_media_type"


# --- requeue ---------------------------------------------------------------------------------

SEED = "0x" + "44" * 32


@pytest.mark.parametrize(
    ("status", "fields", "back_to", "actor"),
    [
        # another round of renders, the attempt counter going on (rejected ones are not redone)
        (Status.NEEDS_REVIEW, {"seed": SEED, "attempt": 3}, Status.NEEDS_REVIEW, "rerender_token"),
        (Status.FAILED, {"seed": SEED, "attempt": 1}, Status.SEED_COMMITTED, "render_token"),
        (Status.FAILED, {"seed": SEED, "image_sha256": "ab" * 32}, Status.RENDERED, "pin_token"),
        (
            Status.FAILED,
            {
                "seed": SEED,
                "image_sha256": "ab" * 32,
                "metadata_cid": "bafkrei",
                "metadata_sha256": "cd" * 32,
            },
            Status.PINNED,
            "publish_pending",
        ),
        (Status.FAILED, {}, Status.CONFIRMED, "commit_seeds"),
    ],
)
def test_it_requeues_a_token_to_the_stage_that_stopped_it(
    client: Client,
    alpha: Collection,
    redis_url: str,
    status: str,
    fields: dict[str, Any],
    back_to: str,
    actor: str,
) -> None:
    token = make_token(alpha, 1, status, failure_reason="it broke", **fields)
    _, key = ApiKey.issue(alpha, "ops")
    response = client.post("/api/collections/alpha/tokens/1/requeue/", **bearer(key))
    assert response.status_code == 202
    body = response.json()
    assert body["requeued"]["previous_status"] == status
    assert body["requeued"]["status"] == back_to and body["requeued"]["actor"] == actor
    assert body["token"]["status"] == back_to and body["token"]["failure_reason"] is None
    token.refresh_from_db()
    assert token.status == back_to
    assert token.attempt == fields.get("attempt", 0)
    assert token.events.last().detail.startswith(f"requeued by API key {key.split('_')[1]}")


@pytest.mark.parametrize(
    ("status", "fields", "message"),
    [
        (Status.RENDERING, {"seed": SEED}, "only FAILED or NEEDS_REVIEW tokens can be requeued"),
        (Status.REORGED, {}, "only FAILED or NEEDS_REVIEW"),
        (Status.FAILED, {"seed": "0x" + "66" * 32}, "sending it back cannot fix that"),
    ],
)
def test_it_refuses_to_requeue_a_token_that_cannot_be(
    client: Client, alpha: Collection, status: str, fields: dict[str, Any], message: str
) -> None:
    make_token(alpha, 1, status, **fields)
    _, key = ApiKey.issue(alpha, "ops")
    response = client.post("/api/collections/alpha/tokens/1/requeue/", **bearer(key))
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "not_requeueable" and message in error["message"]
    assert Token.objects.get().status == status


# --- schema and docs -------------------------------------------------------------------------


def test_it_serves_its_openapi_schema_and_docs_without_a_cdn(client: Client, db: None) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert schema["openapi"].startswith("3.")
    assert "/api/collections/{slug}/tokens/{token_id}/stream/" in schema["paths"]
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    for docs in ("/api/docs/", "/api/redoc/"):
        page = client.get(docs).content.decode()
        assert "/static/drf_spectacular_sidecar/" in page
        assert "cdn" not in page.lower() and "unpkg" not in page.lower()


def test_it_answers_an_oversized_body_with_413_naming_the_limit(
    client: Client, alpha: Collection
) -> None:
    _, key = ApiKey.issue(alpha, "studio site")
    body = '{"url": "https://hooks.example/' + "a" * (8 * 2**20) + '"}'
    response = client.post(
        "/api/collections/alpha/webhooks/", body, content_type="application/json", **bearer(key)
    )
    assert response.status_code == 413
    error = error_of(response)
    limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert error["code"] == "request_too_large" and f"{limit} bytes" in error["message"]


def test_it_answers_too_many_query_parameters_with_400(client: Client, alpha: Collection) -> None:
    query = "&".join(f"p{n}=1" for n in range(1_500))
    response = client.get(f"/api/collections/alpha/tokens/?{query}")
    assert response.status_code == 400
    error = error_of(response)
    limit = django_settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    assert error["code"] == "too_many_parameters" and f"{limit} parameters" in error["message"]
