"""``/ipfs/<cid>`` as a browser, a wallet or a marketplace's crawler sees it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client
from multiformats import CID, multihash

from ipfs import unixfs
from ipfs.backends.local import LocalPinner
from ipfs.cid import CHUNK_SIZE, compute_cid
from ipfs.store import LocalStore
from ipfs.tree import build_tree, fetch_tree
from tests.test_ipfs import make_folder

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
METADATA = json.dumps({"name": "token 1", "image": "ipfs://x"}, separators=(",", ":")).encode()
BIG_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (2 * CHUNK_SIZE // 256)  # 3 chunks
RAW = "application/vnd.ipld.raw"
IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (PNG, "image/png"),
        (BIG_PNG, "image/png"),
        (METADATA, "application/json"),
        (b"{not json", "application/octet-stream"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "application/octet-stream"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    ],
    ids=["png", "multi-chunk-png", "json", "brace-not-json", "wav", "webp"],
)
def test_it_serves_content_with_immutable_caching(
    client: Client, store: LocalStore, content: bytes, content_type: str
) -> None:
    cid = store.add(content)
    response = client.get(f"/ipfs/{cid}")
    assert response.status_code == 200
    assert response.content == content
    assert response["Content-Type"] == content_type
    assert response["Content-Length"] == str(len(content))
    assert response["ETag"] == f'"{cid}"'
    assert response["Cache-Control"] == IMMUTABLE
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Ipfs-Path"] == f"/ipfs/{cid}"


def test_it_serves_a_multi_chunk_image_under_its_dag_pb_root(
    client: Client, store: LocalStore
) -> None:
    cid = store.add(BIG_PNG)
    assert cid == compute_cid(BIG_PNG) and cid.startswith("bafybei")
    assert client.get(f"/ipfs/{cid}").content == BIG_PNG


@pytest.mark.parametrize(
    "if_none_match",
    ['"{cid}"', 'W/"{cid}"', '"bafyother", "{cid}"', "*"],
    ids=["exact", "weak", "in-a-list", "any"],
)
def test_it_answers_not_modified_to_a_matching_etag(
    client: Client, store: LocalStore, if_none_match: str
) -> None:
    cid = store.add(PNG)
    response = client.get(f"/ipfs/{cid}", HTTP_IF_NONE_MATCH=if_none_match.format(cid=cid))
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == f'"{cid}"'
    assert response["Cache-Control"] == IMMUTABLE


def test_it_sends_the_content_to_an_etag_that_does_not_match(
    client: Client, store: LocalStore
) -> None:
    cid = store.add(PNG)
    other = compute_cid(b"other")
    response = client.get(f"/ipfs/{cid}", HTTP_IF_NONE_MATCH=f'"{other}"')
    assert response.status_code == 200 and response.content == PNG


def test_it_names_the_canonical_cid_whatever_the_multibase(
    client: Client, store: LocalStore
) -> None:
    cid = store.add(METADATA)
    base58 = str(CID.decode(cid).set(base="base58btc"))
    response = client.get(f"/ipfs/{base58}")
    assert response.status_code == 200 and response.content == METADATA
    assert response["ETag"] == f'"{cid}"'


def test_it_answers_404_naming_an_unknown_cid(client: Client, store: LocalStore) -> None:
    cid = compute_cid(b"never stored")
    response = client.get(f"/ipfs/{cid}")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": f"{cid} is not in this node's store"}
    assert response["Cache-Control"] == "no-store"  # it may be pinned a minute from now


@pytest.mark.parametrize(
    "bad",
    [
        "hello",
        "bafy",
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CIDv0: we serve CIDv1 only
        "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4ye",  # truncated
        str(CID("base32", 1, "raw", multihash.digest(b"x", "sha2-512"))),
        str(CID("base32", 1, "dag-cbor", multihash.digest(b"x", "sha2-256"))),
    ],
)
def test_it_answers_400_to_a_malformed_cid(client: Client, store: LocalStore, bad: str) -> None:
    response = client.get(f"/ipfs/{bad}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_cid"


@pytest.mark.parametrize("content", [METADATA, BIG_PNG], ids=["raw", "dag-pb"])
def test_it_never_serves_a_corrupted_file(
    client: Client, store: LocalStore, content: bytes
) -> None:
    cid = store.add(content)
    tampered = content.replace(b"token 1", b"token 2") if content is METADATA else content[:-1]
    store.path_for(cid).write_bytes(tampered)
    response = client.get(f"/ipfs/{cid}")
    assert response.status_code == 500
    assert response.json() == {
        "error": "corrupted",
        "detail": f"the stored copy of {cid} fails verification",
    }
    assert tampered not in response.content
    assert "ETag" not in response and response["Cache-Control"] == "no-store"


def test_it_answers_head_without_a_body_and_refuses_writes(
    client: Client, store: LocalStore
) -> None:
    cid = store.add(PNG)
    head = client.head(f"/ipfs/{cid}")
    assert head.status_code == 200 and head.content == b""
    assert head["ETag"] == f'"{cid}"'
    assert client.post(f"/ipfs/{cid}").status_code == 405


def test_any_page_may_fetch_the_content(client: Client, store: LocalStore) -> None:
    # the mint page reads the metadata from the gateway, which may be another origin
    cid = store.add(METADATA)
    response = client.get(f"/ipfs/{cid}", headers={"Origin": "http://localhost:8000"})
    assert response["Access-Control-Allow-Origin"] == "*"


def test_it_serves_raw_blocks_to_a_trustless_client(
    client: Client, store: LocalStore, tmp_path: Path
) -> None:
    # a published model folder: its directory node is a block, served only as one
    built = build_tree(make_folder(tmp_path / "model"))
    LocalPinner(store).pin_tree(built)
    plain = client.get(f"/ipfs/{built.root}")
    assert plain.status_code == 406 and "?format=raw" in plain.json()["detail"]
    for ask in ({"format": "raw"}, {}):
        headers = {} if ask else {"Accept": RAW}
        response = client.get(f"/ipfs/{built.root}", ask, headers=headers)
        assert response.status_code == 200
        assert response["Content-Type"] == RAW and response["ETag"] == f'"{built.root}.raw"'
        node = unixfs.decode_pb_node(response.content)
        assert {link.name for link in node.links} == {
            "Zebra.txt",
            "apple.txt",
            "empty",
            "tokenizer",
            "unet",
        }
    # a multi-chunk file's raw block is its root node, not the file
    big = store.add(BIG_PNG)
    root = client.get(f"/ipfs/{big}?format=raw")
    assert root["Content-Type"] == RAW and len(unixfs.decode_pb_node(root.content).links) == 3
    # the whole folder comes back through the gateway, every block and file checked
    out = fetch_tree(
        built.root,
        tmp_path / "out",
        get_block=lambda cid: client.get(f"/ipfs/{cid}?format=raw").content,
        get_file=lambda cid: client.get(f"/ipfs/{cid}").content,
    )
    assert build_tree(out).root == built.root
