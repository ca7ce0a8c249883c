"""Changing a collection's royalty, and keeping its contract metadata saying the same.

The contract pays an ERC-2981 royalty, which the admin changes with ``setDefaultRoyalty``; the
contract metadata (``contractURI``, pinned at the freeze: chain/freeze.py) repeats it as
OpenSea's ``seller_fee_basis_points`` and ``fee_recipient``, which marketplaces read. Change one
without the other and a marketplace shows a royalty the contract does not pay.

:func:`royalty_change` works out both transactions, with no key: the new royalty (when it
changes), then ``setContractURI`` naming the contract metadata as the chain holds it with only
the royalty fields changed, pinned on each IPFS target first. Both need ``DEFAULT_ADMIN_ROLE``;
``manage.py set_royalty`` sends them with the admin key, or prints them for a multisig, which
sends them in one batch (chain/admin_calls.py); the sale page prepares them too. This module
sends nothing, so the web tier may import it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from web3 import Web3

from chain.admin_calls import AdminCall, admin_call, nonzero_address
from chain.contract import bind
from chain.errors import ChainError
from chain.freeze import royalty_of
from generation.canonical import canonical_json
from generation.collection_config import Royalty
from generation.models import Collection
from generation.pin_ledger import pin_bytes, replicated
from ipfs.errors import IpfsError

__all__ = [
    "RoyaltyRefused",
    "check_royalty",
    "describe",
    "record_contract_uri",
    "royalty_change",
    "stated_royalty",
]

# ERC-2981's denominator in OpenZeppelin's ERC2981: a royalty is at most the whole sale.
MAX_BASIS_POINTS = 10_000
ROYALTY_KEYS = ("seller_fee_basis_points", "fee_recipient")


class RoyaltyRefused(ChainError, ValueError):
    """The royalty cannot be changed as asked; the text says why. Nothing was pinned or sent."""


def check_royalty(receiver: str, basis_points: int | str) -> Royalty:
    """The royalty ``receiver`` and ``basis_points`` name, or :class:`RoyaltyRefused` saying
    which is wrong (the contract would revert on both)."""
    recipient = nonzero_address(receiver, "the royalty receiver", RoyaltyRefused)
    try:
        bps = int(basis_points)
    except ValueError:
        raise RoyaltyRefused(
            f"the royalty {basis_points!r} is not a whole number of basis points"
        ) from None
    if not 0 <= bps <= MAX_BASIS_POINTS:
        raise RoyaltyRefused(
            f"the royalty must be from 0 to {MAX_BASIS_POINTS} basis points (100 %), not {bps}"
        )
    return Royalty(recipient=recipient, basis_points=bps)


def royalty_change(
    w3: Web3, collection: Collection, royalty: Royalty | None = None
) -> list[AdminCall]:
    """The admin's transactions that make the contract pay ``royalty`` (None: the royalty it
    pays now stays) and its contract metadata say so; empty when both already do.

    The contract metadata is the document ``contractURI`` names on the chain, fetched from the
    IPFS targets, with only the royalty fields changed: its config digest, pictures and links
    stay as the freeze made them. A collection that is not frozen yet has no contract metadata
    on-chain; its freeze reads the royalty from the contract, so only the royalty is sent, and a
    prepared freeze (whose metadata is pinned already) is refused: withdraw it first.
    """
    collection = Collection.objects.get(pk=collection.pk)
    if not collection.contract_address:
        raise RoyaltyRefused(f"{collection.slug} has no contract yet: deploy it first")
    contract = bind(w3, collection.contract_address)
    current = royalty_of(w3, collection)
    target = current if royalty is None else _as_paid(royalty)
    calls = []
    if royalty is not None and target != current:
        args = (royalty.recipient, royalty.basis_points)
        calls.append(admin_call(collection, contract, "setDefaultRoyalty(address,uint96)", args))
    if not collection.config_digest:
        if collection.prepared_config_digest:
            raise RoyaltyRefused(
                f"{collection.slug} has a prepared freeze whose contract metadata names the "
                "royalty as it was: withdraw the prepared freeze, change the royalty, then "
                "prepare the freeze again"
            )
        return calls  # the freeze will read the new royalty
    uri = contract.functions.contractURI().call()
    document = _document(collection, uri)
    updated = _with_royalty(document, target)
    if updated != document:
        cid = pin_bytes(
            canonical_json(updated),
            name=f"{collection.slug}-contract.json",
            profile=collection.ipfs_profile(),
            collection=collection,
        )
        calls.append(admin_call(collection, contract, "setContractURI(string)", (f"ipfs://{cid}",)))
    return calls


def record_contract_uri(w3: Web3, collection: Collection) -> str:
    """Record the contract URI the chain holds as the collection's; that URI.
    :class:`RoyaltyRefused`, and nothing recorded, when the document it names is not this
    collection's contract metadata."""
    uri = str(bind(w3, collection.contract_address).functions.contractURI().call())
    recorded = Collection.objects.filter(pk=collection.pk).exclude(contract_uri=uri)
    if recorded.exists():
        _document(collection, uri)
        recorded.update(contract_uri=uri)
    return uri


def stated_royalty(collection: Collection, uri: str) -> Royalty | None:
    """The royalty the contract metadata at ``uri`` states (None: it states none);
    :class:`RoyaltyRefused` when it cannot be read or is not this collection's."""
    document = _document(collection, uri)
    if "seller_fee_basis_points" not in document:
        return None
    return Royalty(
        recipient=str(document.get("fee_recipient", "")),
        basis_points=int(document["seller_fee_basis_points"]),
    )


def describe(royalty: Royalty | None) -> str:
    """``5.00 % to 0x…``, or ``none``."""
    return f"{royalty.basis_points / 100:.2f} % to {royalty.recipient}" if royalty else "none"


def _as_paid(royalty: Royalty) -> Royalty | None:
    """As :func:`~chain.freeze.royalty_of` reads it back: a royalty of 0 pays none."""
    return royalty if royalty.basis_points else None


def _document(collection: Collection, uri: str) -> dict[str, Any]:
    if not uri.startswith("ipfs://"):
        raise RoyaltyRefused(
            f"{collection.slug}: the contract metadata is at {uri!r}, not an ipfs:// URI this "
            "backend pinned; change it by hand"
        )
    cid = uri.removeprefix("ipfs://")
    try:
        document = json.loads(_pinned(cid))
    except (IpfsError, OSError, ValueError) as exc:
        raise RoyaltyRefused(
            f"{collection.slug}: the contract metadata {uri} could not be read: {exc}"
        ) from exc
    if not isinstance(document, dict) or document.get("config_digest") != collection.config_digest:
        raise RoyaltyRefused(
            f"{collection.slug}: the contract metadata {uri} is not this collection's (its config "
            f"digest is not {collection.config_digest}); change it by hand"
        )
    return document


@lru_cache(maxsize=64)
def _pinned(cid: str) -> bytes:
    """A CID's bytes from the first IPFS target that serves them; they never change, so the
    sale page reads each contract metadata document once per process."""
    return replicated().get(cid)


def _with_royalty(document: dict[str, Any], royalty: Royalty | None) -> dict[str, Any]:
    updated = {k: v for k, v in document.items() if k not in ROYALTY_KEYS}
    if royalty is not None:
        updated["seller_fee_basis_points"] = royalty.basis_points
        updated["fee_recipient"] = royalty.recipient
    return updated
