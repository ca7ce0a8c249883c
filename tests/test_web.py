"""The gateway and the status API as an HTTP client sees them."""

from __future__ import annotations

import pytest
from django.test import Client

from generation.models import Collection, Token
from ipfs.cid import compute_cid
from ipfs.store import LocalStore

PNG = b"\x89PNG\r\n\x1a\n" + b"not really an image"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (PNG, "image/png"),
        (b'{"name":"x"}', "application/json"),
        (b"\x00\x01", "application/octet-stream"),
    ],
)
def test_it_serves_stored_content_by_cid(
    client: Client, store: LocalStore, content: bytes, content_type: str
) -> None:
    cid = store.add(content)
    response = client.get(f"/ipfs/{cid}")
    assert response.status_code == 200
    assert response.content == content
    assert response["Content-Type"] == content_type
    assert response["ETag"] == f'"{cid}"'
    assert "immutable" in response["Cache-Control"]
    assert response["X-Content-Type-Options"] == "nosniff"


def test_it_answers_not_modified_for_a_known_etag(client: Client, store: LocalStore) -> None:
    cid = store.add(PNG)
    assert client.get(f"/ipfs/{cid}", HTTP_IF_NONE_MATCH=f'"{cid}"').status_code == 304


def test_it_says_which_cid_is_missing(client: Client, store: LocalStore) -> None:
    cid = compute_cid(b"never stored")
    response = client.get(f"/ipfs/{cid}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert cid in response.json()["detail"]


@pytest.mark.parametrize("bad", ["hello", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "bafy"])
def test_it_refuses_a_malformed_cid(client: Client, store: LocalStore, bad: str) -> None:
    response = client.get(f"/ipfs/{bad}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_cid"


def _collection(slug: str, address: int) -> Collection:
    return Collection.objects.create(
        slug=slug,
        name=slug,
        chain_id=31337,
        contract_address=f"0x{address:040x}",
        model_dir="m",
        clip_dir="c",
        prompt_template="p",
        style_prompt="s",
        clip_threshold=0.2,
    )


@pytest.mark.django_db
def test_it_reports_a_token_in_progress_without_publication_fields(client: Client) -> None:
    collection = _collection("alpha", 1)
    Token.objects.create(
        collection=collection,
        token_id=7,
        owner="0x" + "11" * 20,
        mint_tx_hash="0x" + "33" * 32,
        mint_log_index=0,
        mint_block_number=5,
        mint_block_hash="0x" + "22" * 32,
        expected_seed="0x" + "44" * 32,
        status=Token.Status.RENDERING,
    )
    doc = client.get("/api/tokens/7/").json()
    assert doc["status"] == "RENDERING"
    assert "token_uri" not in doc and "seed" not in doc


@pytest.mark.django_db
def test_it_answers_json_errors_for_unknown_and_ambiguous_tokens(client: Client) -> None:
    _collection("alpha", 1)
    missing = client.get("/api/tokens/9/")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "token_not_found"
    assert "token 9 of alpha has not been seen" in missing.json()["error"]["message"]
    _collection("beta", 2)
    ambiguous = client.get("/api/tokens/9/")
    assert ambiguous.status_code == 400
    assert ambiguous.json()["error"]["code"] == "ambiguous_collection"
    unknown = client.get("/api/collections/beta/tokens/9/")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {
        "code": "token_not_found",
        "message": unknown.json()["error"]["message"],
        "status": 404,
    }


@pytest.mark.django_db
def test_it_lists_collections_and_tokens_in_the_admin(client: Client, admin_user) -> None:  # type: ignore[no-untyped-def]
    _collection("alpha", 1)
    client.force_login(admin_user)
    assert b"alpha" in client.get("/admin/generation/collection/").content
    assert client.get("/admin/generation/token/").status_code == 200
