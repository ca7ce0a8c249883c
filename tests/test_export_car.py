"""``manage.py export_car``: a collection's every pinned block in a CAR that another reader takes.

The CAR is read back with ``ipld-car`` (Storacha's CAR reader, on PyPI), not with our writer's
code: each block must hash to the CID the file names it by, the header's one root must be the
export's folder, and walking that folder from the CAR alone must give back the exact bytes of
every token's metadata and image, the contract metadata and its picture, and the published
weights, each under the CID the collection recorded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import ipld_car
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from generation.canonical import canonical_json
from generation.collection_config import contract_metadata, generation_config
from generation.models import Collection, Token
from generation.published_weights import pin_weights
from ipfs import unixfs
from ipfs.backends.local import LocalPinner
from ipfs.profiles import PROFILES
from ipfs.store import LocalStore
from tests.test_api import make_token

pytestmark = pytest.mark.django_db

SMALL_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
# over one chunk in both profiles: a DAG of several blocks either way
BIG_PNG = b"\x89PNG\r\n\x1a\n" + hashlib.sha256(b"big").digest() * (40 * 1024)


def read_car(path: Path) -> tuple[list[str], dict[str, bytes]]:
    """The roots and the blocks by CID, each block checked to hash to its CID."""
    roots, blocks = ipld_car.decode(path.read_bytes())
    by_cid = {}
    for cid, data in blocks:
        assert cid.hashfun.name == "sha2-256"
        assert hashlib.sha256(bytes(data)).digest() == bytes(cid.raw_digest), cid
        by_cid[str(cid.set(base="base32"))] = bytes(data)
    return [str(r.set(base="base32")) for r in roots], by_cid


def walk(cid: str, blocks: dict[str, bytes]) -> bytes | dict[str, object]:
    """A file's bytes or a folder's entries, from the CAR's blocks alone."""
    block = blocks[cid]
    if cid.startswith("bafkrei"):  # a raw leaf: the bytes themselves
        return block
    node = unixfs.decode_pb_node(block)
    data = unixfs.decode_unixfs_data(node.data or b"")
    if data.type == unixfs.UNIXFS_DIRECTORY:
        return {link.name: walk(str(link.hash), blocks) for link in node.links}
    parts = [walk(str(link.hash), blocks) for link in node.links]
    return b"".join(p for p in parts if isinstance(p, bytes))


def at(tree: bytes | dict[str, object], path: str) -> bytes | dict[str, object]:
    for name in path.split("/"):
        assert isinstance(tree, dict), path
        tree = tree[name]  # type: ignore[assignment]
    return tree


def publish(collection: Collection, pinner: LocalPinner) -> None:
    """Pin the weights, the collection image and the contract metadata, as the freeze does."""
    profile = collection.ipfs_profile()
    pin_weights(collection, pinner)
    image = "ipfs://" + pinner.pin(BIG_PNG, profile=profile)
    metadata = contract_metadata(collection, generation_config(collection), image=image)
    cid = pinner.pin(canonical_json(metadata), profile=profile)
    Collection.objects.filter(pk=collection.pk).update(prepared_contract_uri=f"ipfs://{cid}")
    collection.refresh_from_db()


@pytest.mark.parametrize("profile", list(PROFILES))
def test_the_car_holds_every_pinned_block_of_the_collection(
    profile: str, reference_models: Path, store: LocalStore, tmp_path: Path
) -> None:
    # Given a collection that published its weights, with two tokens pinned and one not yet
    collection = Collection.objects.create(
        slug=f"export-{profile}",
        name="Export",
        chain_id=31337,
        contract_address=f"0x{0xCA7:040x}",
        model_dir=str(reference_models / "diffusion"),
        clip_dir=str(reference_models / "clip"),
        prompt_template="an abstract painting",
        style_prompt="an abstract painting",
        clip_threshold=0.2,
        cid_profile=profile,
        publish_weights=True,
    )
    pinner = LocalPinner(store)
    publish(collection, pinner)
    pinned = {}
    for token_id, image in ((1, SMALL_PNG), (1002, BIG_PNG)):
        metadata = json.dumps({"name": f"#{token_id}"}).encode()
        image_cid = pinner.pin(image, profile=collection.ipfs_profile())
        metadata_cid = pinner.pin(metadata, profile=collection.ipfs_profile())
        make_token(collection, token_id, Token.Status.PINNED, image_cid=image_cid)
        Token.objects.filter(token_id=token_id).update(metadata_cid=metadata_cid)
        pinned[token_id] = (image, image_cid, metadata, metadata_cid)
    make_token(collection, 7, Token.Status.RENDERED)

    # When the operator exports it
    out = tmp_path / "collection.car"
    call_command("export_car", collection.slug, "--output", str(out))

    # Then an independent reader finds one root, every block hashing to its CID
    roots, blocks = read_car(out)
    (root,) = roots
    tree = walk(root, blocks)
    assert isinstance(tree, dict)
    assert sorted(tree) == ["collection-image", "contract.json", "tokens", "weights"]
    # each token's metadata and image, byte for byte, under the CIDs the collection recorded
    for token_id, (image, image_cid, metadata, metadata_cid) in pinned.items():
        folder = f"tokens/{token_id // 1000}"
        assert at(tree, f"{folder}/{token_id}.json") == metadata
        assert at(tree, f"{folder}/{token_id}.png") == image
        assert image_cid in blocks and metadata_cid in blocks
    assert "7.json" not in at(tree, "tokens/0")  # type: ignore[operator]
    # the contract metadata names the collection image and the weights, all inside
    contract = json.loads(at(tree, "contract.json"))  # type: ignore[arg-type]
    assert collection.prepared_contract_uri.removeprefix("ipfs://") in blocks
    assert at(tree, "collection-image") == BIG_PNG
    assert contract["image"].removeprefix("ipfs://") in blocks
    weights = contract["generation"]["weights"]
    for key in ("diffusion", "clip"):
        assert weights[key]["cid"] in blocks
        folder = at(tree, f"weights/{key}")
        assert isinstance(folder, dict) and folder
    unet = at(tree, "weights/diffusion/unet/diffusion_pytorch_model.safetensors")
    local = reference_models / "diffusion" / "unet" / "diffusion_pytorch_model.safetensors"
    assert unet == local.read_bytes()


def test_an_unknown_collection_is_refused() -> None:
    with pytest.raises(CommandError, match="no collection 'nowhere'"):
        call_command("export_car", "nowhere")
