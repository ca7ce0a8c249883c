"""Token metadata: OpenSea's metadata standard plus the provenance of every parameter.

``name``, ``description``, ``image``, ``external_url`` (the token's page here) and
``attributes`` (``trait_type`` and ``value`` only) are what marketplaces read; ``rarity`` (each
trait's configured probability) and ``provenance`` are ours, beside them.

The bytes are canonical JSON (generation/canonical.py: sorted keys, compact separators, UTF-8), so the on-chain sha256
digest of the metadata, and hence its CID, can be recomputed by anyone from the same fields.
"""

from __future__ import annotations

import functools
from importlib import metadata as importlib_metadata
from typing import Any

from generation.models import Token

SOFTWARE = "mint-on-demand"


@functools.cache
def _versions() -> tuple[tuple[str, str], ...]:
    found = []
    for dist in (SOFTWARE, "diffusers", "open-clip-torch", "torch", "transformers"):
        try:
            found.append((dist, importlib_metadata.version(dist)))
        except importlib_metadata.PackageNotFoundError:
            found.append((dist, "unknown"))
    return tuple(found)


def software_versions() -> dict[str, str]:
    """The versions of what rendered and checked a token (read once per process: scanning the
    installed distributions costs milliseconds, and a process's packages do not change)."""
    return dict(_versions())


def _seed_block(token: Token) -> dict[str, Any]:
    """Where a future-block or VRF seed came from (nothing for a mint-block seed, so those
    documents are what they were before other seed sources existed)."""
    if token.collection.vrf_coordinator:
        return {"vrf": {"coordinator": token.collection.vrf_coordinator, **token.seed_record}}
    delay = token.collection.seed_delay
    if not delay:
        return {}
    return {
        "seed_block_number": token.mint_block_number + delay,
        "seed_block_hash": token.seed_block_hash,
    }


def build_metadata(token: Token, image_cid: str) -> dict[str, Any]:
    """The metadata document of a rendered, verified token whose image is pinned."""
    from generation.collection_config import seed_scheme
    from generation.site_links import token_url
    from generation.traits import attributes, rarity, trait_rarity

    collection = token.collection
    record = token.render_record
    traits = record.get("traits", {})
    table, supply = collection.rarity, collection.max_supply
    return {
        "name": f"{collection.name} #{token.token_id}",
        "description": collection.description,
        "image": f"ipfs://{image_cid}",
        "external_url": token_url(collection.slug, token.token_id),
        "attributes": attributes(traits, table, max_supply=supply) if traits else [],
        "rarity": trait_rarity(traits, table, max_supply=supply) if traits else {},
        "provenance": {
            "chain_id": collection.chain_id,
            "contract": collection.contract_address,
            "token_id": str(token.token_id),
            "mint_tx": token.mint_tx_hash,
            "mint_block_number": token.mint_block_number,
            "mint_block_hash": token.mint_block_hash,
            **_seed_block(token),
            "seed": token.seed,
            "seed_scheme": seed_scheme(collection.seed_delay, bool(collection.vrf_coordinator)),
            "attempt": record["attempt"],
            "torch_seed": str(record["torch_seed"]),
            "model": record["model"],
            "render": record["render"],
            "clip": record["clip"],
            "traits": traits,
            "rarity": rarity(traits, table, max_supply=supply) if traits else None,
            "software": record["software"],
        },
    }
