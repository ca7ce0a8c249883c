"""The JSON documents the API and the webhooks send: one builder per thing, shared by both."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db.models import Count

from generation import stages
from generation.models import Collection, Token, TokenEvent

Status = Token.Status
PUBLISHED = {Status.PUBLISHED, Status.FINAL}
# A token in one of these will not move again by itself (a requeue may still move it): the
# stage table's settled statuses.
TERMINAL = stages.SETTLED
RENDERED = {Status.RENDERED, Status.PINNED, Status.PUBLISHING, Status.PUBLISHED, Status.FINAL}


def event_document(event: TokenEvent) -> dict[str, Any]:
    return {"status": event.status, "detail": event.detail, "at": event.at.isoformat()}


def traits_document(token: Token) -> dict[str, Any]:
    """The token's traits with their configured probabilities (empty before the render)."""
    from generation.traits import attributes, rarity

    traits = token.traits or {}
    if not traits:
        return {}
    collection = token.collection
    doc: dict[str, Any] = {"traits": traits}
    try:
        doc["attributes"] = attributes(traits, collection.rarity, max_supply=collection.max_supply)
        doc["rarity"] = rarity(traits, collection.rarity, max_supply=collection.max_supply)
    except ValueError:
        # Traits drawn from a table that no longer fits them cannot be scored; say nothing
        # rather than something wrong.
        doc["attributes"], doc["rarity"] = None, None
    return doc


def token_document(
    token: Token,
    *,
    detail: bool = True,
    history: bool = True,
    events: list[TokenEvent] | None = None,
) -> dict[str, Any]:
    """A token's status document.

    Always: where it is (collection, contract, chain, id, owner, status, mint). Once published:
    seed, tokenURI, image and CLIP scores. Once rendered: its traits, and with ``detail`` their
    attributes and rarity. With ``detail`` and ``history``: its stage history (``events``,
    read here when not given).
    """
    doc: dict[str, Any] = {
        "collection": token.collection.slug,
        "contract": token.collection.contract_address,
        "chain_id": token.collection.chain_id,
        "token_id": token.token_id,
        "owner": token.owner,
        "status": token.status,
        "failure_reason": token.failure_reason or None,
        "mint_tx": token.mint_tx_hash,
        "mint_block_number": token.mint_block_number,
        "mint_block_hash": token.mint_block_hash,
        "attempt": token.attempt,
        "updated_at": token.updated_at.isoformat(),
    }
    if token.status in PUBLISHED:
        doc.update(
            seed=token.seed,
            token_uri=token.token_uri,
            metadata_url=f"{settings.IPFS_GATEWAY_URL}/{token.metadata_cid}",
            image_cid=token.image_cid,
            image_url=f"{settings.IPFS_GATEWAY_URL}/{token.image_cid}",
            clip_scores=token.clip_scores.get("scores", {}),
            clip_thresholds=token.clip_scores.get("thresholds", {}),
            publish_tx=token.publish_tx_hash,
        )
    if token.traits:
        doc.update(traits_document(token) if detail else {"traits": token.traits})
    if detail and history:
        if events is None:
            events = list(token.events.all())
        doc["events"] = [event_document(e) for e in events]
    return doc


def etag_for(document: Any) -> str:
    """A strong ETag: the hash of the document's canonical JSON (the bytes a client compares
    cannot change without it changing)."""
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


def rarity_document(collection: Collection) -> dict[str, Any]:
    """The collection's rarity table, each option with its configured probability."""
    from generation.traits import trait_probabilities

    table = collection.rarity or {"mode": "none", "categories": []}
    problems: list[str] = []
    try:
        probabilities = trait_probabilities(table, max_supply=collection.max_supply)
    except ValueError as exc:
        probabilities = {}
        problems = list(exc.args[0]) if exc.args and isinstance(exc.args[0], list) else [str(exc)]
    categories = []
    for category in table.get("categories", []) if isinstance(table, dict) else []:
        if not isinstance(category, dict):
            continue
        name = category.get("name")
        options = []
        for option in category.get("options", []):
            if not isinstance(option, dict):
                continue
            entry = {k: option[k] for k in ("name", "prompt", "weight", "quota") if k in option}
            entry["probability"] = probabilities.get(name, {}).get(option.get("name"))
            options.append(entry)
        categories.append(
            {"name": name, "verify": bool(category.get("verify")), "options": options}
        )
    doc: dict[str, Any] = {
        "collection": collection.slug,
        "mode": table.get("mode", "none") if isinstance(table, dict) else None,
        "max_supply": collection.max_supply,
        "categories": categories,
    }
    if problems:
        doc["problems"] = problems
    return doc


def status_counts(collection_pks: list[int]) -> dict[int, dict[str, int]]:
    """collection pk → status → number of tokens, in one query."""
    counts: dict[int, dict[str, int]] = {pk: {} for pk in collection_pks}
    rows = (
        Token.objects.filter(collection_id__in=collection_pks)
        .order_by()
        .values_list("collection_id", "status")
        .annotate(n=Count("pk"))
    )
    for collection_pk, status, n in rows:
        counts[collection_pk][status] = n
    return counts


def collection_document(collection: Collection, counts: dict[str, int]) -> dict[str, Any]:
    minted = sum(n for status, n in counts.items() if status != Status.REORGED)
    return {
        "slug": collection.slug,
        "name": collection.name,
        "description": collection.description,
        "chain_id": collection.chain_id,
        "contract": collection.contract_address,
        "deployment_block": collection.deployment_block,
        "max_supply": collection.max_supply,
        "config_digest": collection.config_digest or None,
        "frozen": bool(collection.config_digest),
        "contract_uri": collection.contract_uri or None,
        "paused": collection.paused,
        "created_at": collection.created_at.isoformat(),
        "tokens": {
            "minted": minted,
            "published": sum(counts.get(s, 0) for s in PUBLISHED),
            "by_status": {s: counts.get(s, 0) for s in Status.values},
        },
        "rarity": rarity_document(collection),
    }
