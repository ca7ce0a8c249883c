"""The collection's frozen generation config, and the ERC-7572 contract metadata that holds it.

Before minting opens, the contract's admin commits ``configDigest`` =
sha256(canonical JSON of the ``generation`` object in the contract metadata) and points
``contractURI`` at that metadata. After that, nothing that shapes a token's output may change:
anyone can fetch ``contractURI``, hash its ``generation`` object and compare it with the chain.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from generation.canonical import canonical_json
from generation.models import Collection

SEED_SCHEME = "keccak256(abi.encodePacked(bytes32 mintBlockHash, uint256 tokenId))"
FUTURE_BLOCK_SEED_SCHEME = (
    "keccak256(abi.encodePacked(bytes32 blockhash(mintBlock + seedDelay), uint256 tokenId))"
)


VRF_SEED_SCHEME = (
    "keccak256(abi.encodePacked(bytes32 randomWord, uint256 tokenId)), randomWord the Chainlink "
    "VRF v2.5 word that fulfilled the batch's request (vrfRequestOf)"
)


def seed_scheme(seed_delay: int, vrf: bool = False) -> str:
    """The seed scheme in words: the mint block's hash, the hash of the block ``seed_delay``
    blocks after it (future-block), or a Chainlink VRF random word."""
    if vrf:
        return VRF_SEED_SCHEME
    return FUTURE_BLOCK_SEED_SCHEME if seed_delay else SEED_SCHEME


TORCH_SEED_SCHEME = "sha256(seed || uint32be(attempt))[0:8] as big-endian int, masked to 63 bits"
NEAR_DUPLICATE_SCHEME = (
    "generation/near_duplicates.py: the image resized (box) to 64x64, each RGB channel averaged "
    "over an 8x8 grid and centred; the earlier signature scaled by its least-squares gain "
    "(one for all channels, clamped to 0.8-1.25); distance = the largest absolute cell "
    "difference over the cells where the new image has no pixel at 0 or 255 and no edge-filled "
    "pixel, the smallest over shifts of the new image by up to 2 pixels; rejected at or below "
    "the threshold"
)


def generation_config(collection: Collection) -> dict[str, Any]:
    """Every collection-level input that shapes a token's image and its acceptance.

    ``cid_profile`` (ipfs/profiles.py: how its images, metadata and weights are named on IPFS)
    is there unless it is ``legacy``, the only profile before profiles existed, which a
    verifier assumes when the key is absent; ``near_duplicates`` is there only when the
    collection checks near duplicates, ``seed_delay``
    only for future-block seeds, ``vrf`` only for VRF seeds, ``weights``
    (their CIDs: generation/published_weights.py) only when it publishes its weights, and the
    model block's lever keys (adapters, quantization, runtime, distilled_from) only for the
    levers in use, so the config (and its digest) of a collection without them is what it was
    before they existed.
    """
    from generation.reference_models import model_fingerprint
    from generation.render_levers import lever_record
    from generation.rendering import scheduler_class_name

    model_path, config_dir = collection.model_path(), collection.model_config_path()
    config = {
        "model": {
            "fingerprint": model_fingerprint(model_path),
            "format": "single-file" if model_path.is_file() else "diffusers",
            "scheduler": scheduler_class_name(model_path, config_dir, collection.scheduler),
            # the latency levers in use, only those (generation/render_levers.py)
            **lever_record(collection.levers(), model_path),
        },
        "clip": {
            "fingerprint": model_fingerprint(collection.clip_path()),
            "style_prompt": collection.style_prompt,
            "threshold": collection.clip_threshold,
            "style_images": [
                "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
                for path in collection.style_image_paths()
            ],
            "style_images_threshold": collection.style_images_threshold,
        },
        "prompt_template": collection.prompt_template,
        "negative_prompt": collection.negative_prompt,
        "steps": collection.steps,
        "guidance": collection.guidance,
        "width": collection.width,
        "height": collection.height,
        "max_attempts": collection.max_attempts,
        "max_supply": collection.max_supply,
        "seed_scheme": seed_scheme(collection.seed_delay, bool(collection.vrf_coordinator)),
        "torch_seed_scheme": TORCH_SEED_SCHEME,
        "trait_scheme": "generation/traits.py (weighted: independent draws keyed by seed and "
        "category; quota: token k draws from what tokens 1..k-1 left)",
        "rarity": collection.rarity,
        "trait_margin": collection.trait_margin,
        "uniqueness_threshold": collection.uniqueness_threshold,
    }
    profile = collection.ipfs_profile()
    if profile.name != "legacy":
        config["cid_profile"] = profile.record()
    if collection.seed_delay:
        config["seed_delay"] = collection.seed_delay
    if collection.vrf_coordinator:
        config["vrf"] = {
            "coordinator": collection.vrf_coordinator,
            "subscription_id": collection.vrf_subscription_id,
            "key_hash": collection.vrf_key_hash,
        }
    if collection.publish_weights:
        from generation.published_weights import weights_record

        config["weights"] = weights_record(collection)
    if collection.near_duplicate_threshold is not None:
        config["near_duplicates"] = {
            "threshold": collection.near_duplicate_threshold,
            "scheme": NEAR_DUPLICATE_SCHEME,
        }
    return config


def config_digest(config: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical_json(config)).digest()


@dataclass(frozen=True)
class Royalty:
    """The contract's ERC-2981 default royalty, which OpenSea's contract metadata repeats."""

    recipient: str  # checksummed address
    basis_points: int


def contract_metadata(
    collection: Collection,
    config: dict[str, Any],
    *,
    image: str,
    banner_image: str | None = None,
    royalty: Royalty | None = None,
) -> dict[str, Any]:
    """ERC-7572 ``contractURI`` document; ``generation`` is the part the digest covers.

    ``name``, ``description``, ``image`` and ``banner_image`` (``ipfs://`` URIs of pinned
    pictures: generation/collection_image.py), ``external_link`` (the collection's page here)
    and OpenSea's ``seller_fee_basis_points`` and ``fee_recipient`` (the contract's royalty;
    left out when it pays none) are what marketplaces read.
    """
    from generation.site_links import collection_url

    document: dict[str, Any] = {
        "name": collection.name,
        "description": collection.description,
        "image": image,
        "external_link": collection_url(collection.slug),
        "generation": config,
        "config_digest": "0x" + config_digest(config).hex(),
        "config_digest_scheme": "sha256 of the canonical JSON (sorted keys, compact, UTF-8) "
        "of the generation object",
    }
    if banner_image:
        document["banner_image"] = banner_image
    if royalty is not None:
        document["seller_fee_basis_points"] = royalty.basis_points
        document["fee_recipient"] = royalty.recipient
    return document


def placeholder_metadata(name: str) -> dict[str, Any]:
    """What ``tokenURI`` names before a token is published."""
    return {
        "name": f"{name} (being generated)",
        "description": "This token's seed, image and provenance are published once its "
        "render has passed the collection's CLIP check.",
        "image": "",
        "attributes": [],
    }
