"""Freezing a collection's generation config on-chain, with no key in the web tier.

The freeze is ``freezeConfig(digest, contractURI)`` on the collection's contract, which only the
contract admin (``DEFAULT_ADMIN_ROLE``) may send. It happens in two halves:

1. ``prepare_freeze`` (the admin, no key): validate the config, pin the weights where the
   collection publishes them (generation/published_weights.py), pin the collection's pictures
   (generation/collection_image.py) and its contract metadata, which repeats the royalty the
   contract pays (ERC-2981, read from the chain), compute the digest, and record them as the collection's *prepared* freeze, which locks what
   shapes the output (the digest is of this config). ``FreezeCall`` is the transaction to sign:
   ``to``, ``data`` and the arguments, for a multisig, a hardware wallet or ``cast``.
2. Whoever holds the admin key sends it: ``manage.py freeze_collection <slug>``
   (``chain.deployment.send_freeze``) on a machine with the key, or an external signer.

This module holds no key and sends nothing, so the web tier may import it (an import-linter
contract keeps the web tier away from ``chain.wallets`` and ``chain.sender``).

``record_freeze`` then reads the contract, and once it holds the prepared digest the
collection is frozen in the database (config digest and contract URI set): the listener calls it
for each prepared collection at its confirmed block, and the command after its transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from web3 import Web3
from web3.types import BlockIdentifier

from chain.chains import web3_for
from chain.contract import bind
from chain.errors import ChainError
from generation.canonical import canonical_json
from generation.collection_config import (
    Royalty,
    config_digest,
    contract_metadata,
    generation_config,
)
from generation.collection_image import banner_image, collection_image
from generation.models import Collection
from generation.pin_ledger import pin_bytes
from generation.published_weights import pin_weights

log = logging.getLogger(__name__)

FREEZE_SIGNATURE = "freezeConfig(bytes32,string)"
ZERO_DIGEST = "0x" + "00" * 32


class FreezeRefused(ChainError, ValueError):
    """The collection cannot be frozen as asked: already frozen, no contract, or the contract
    holds a digest other than the prepared one. Nothing was sent."""


@dataclass(frozen=True)
class FreezeCall:
    """The freeze transaction, as an external signer needs it (value 0)."""

    chain_id: int
    to: str  # the contract, checksummed
    data: str  # 0x calldata of freezeConfig(config_digest, contract_uri)
    config_digest: str  # 0x + 64 hex digits
    contract_uri: str

    @property
    def signature(self) -> str:
        return FREEZE_SIGNATURE

    def cast_command(self) -> str:
        """The same transaction with Foundry's ``cast`` (add the signer's flags, e.g. --ledger)."""
        return (
            f'cast send --chain {self.chain_id} {self.to} "{FREEZE_SIGNATURE}" '
            f'{self.config_digest} "{self.contract_uri}"'
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "to": self.to,
            "value": 0,
            "data": self.data,
            "function": FREEZE_SIGNATURE,
            "config_digest": self.config_digest,
            "contract_uri": self.contract_uri,
        }


def freeze_call(collection: Collection) -> FreezeCall | None:
    """The prepared freeze transaction of ``collection`` (None when none is prepared)."""
    if not collection.prepared_config_digest:
        return None
    digest = bytes.fromhex(collection.prepared_config_digest.removeprefix("0x"))
    contract = bind(Web3(), collection.contract_address)  # encoding only: no provider needed
    return FreezeCall(
        chain_id=collection.chain_id,
        to=contract.address,
        data=contract.encode_abi("freezeConfig", args=[digest, collection.prepared_contract_uri]),
        config_digest=collection.prepared_config_digest,
        contract_uri=collection.prepared_contract_uri,
    )


def royalty_of(w3: Web3, collection: Collection) -> Royalty | None:
    """The contract's ERC-2981 default royalty (``royaltyInfo`` of a sale of 10,000 wei is the
    rate in basis points); None when it pays none."""
    contract = bind(w3, collection.contract_address)
    receiver, amount = contract.functions.royaltyInfo(1, 10_000).call()
    if int(receiver, 16) == 0 or not amount:
        return None
    return Royalty(recipient=Web3.to_checksum_address(receiver), basis_points=int(amount))


def prepare_freeze(collection: Collection, w3: Web3 | None = None) -> FreezeCall:
    """Validate the config (``ValidationError``), pin the contract metadata and record the
    prepared freeze; the same call again returns it unchanged. Sends nothing; reads the
    contract's royalty through ``w3`` (default: the collection's chain's endpoints)."""
    collection = Collection.objects.get(pk=collection.pk)
    if collection.config_digest:
        raise FreezeRefused(f"{collection.slug} is already frozen ({collection.config_digest})")
    prepared = freeze_call(collection)
    if prepared is not None:
        return prepared
    collection.full_clean()
    config = generation_config(collection)
    if collection.publish_weights:
        # pinned before the config that names them, every root checked against its CID
        pin_weights(collection)
    royalty = royalty_of(w3 or web3_for(collection.chain_id), collection)
    profile = collection.ipfs_profile()

    def pin(data: bytes, name: str) -> str:  # on each IPFS target, recorded in the ledger
        return pin_bytes(data, name=name, profile=profile, collection=collection)

    image, banner = collection_image(collection), banner_image(collection)
    image_uri = "ipfs://" + pin(image.data, image.filename)
    banner_uri = "ipfs://" + pin(banner.data, banner.filename) if banner else None
    metadata = contract_metadata(
        collection, config, image=image_uri, banner_image=banner_uri, royalty=royalty
    )
    cid = pin(canonical_json(metadata), f"{collection.slug}-contract.json")
    digest, uri = "0x" + config_digest(config).hex(), f"ipfs://{cid}"
    with transaction.atomic():
        # conditional: two managers preparing at once record one freeze
        Collection.objects.filter(pk=collection.pk, prepared_config_digest="").update(
            prepared_config_digest=digest, prepared_contract_uri=uri
        )
    collection.refresh_from_db()
    log.info(
        "%s: freeze prepared, config digest %s, %s (collection image: %s %s)",
        collection.slug, digest, uri, image.source, image_uri,
    )  # fmt: skip
    return freeze_call(collection)  # type: ignore[return-value]


def on_chain_digest(w3: Web3, collection: Collection, block: BlockIdentifier = "latest") -> str:
    """The contract's ``configDigest`` at ``block`` (``ZERO_DIGEST`` before the freeze);
    ``FreezeRefused`` when there is no contract at the collection's address."""
    if not w3.eth.get_code(Web3.to_checksum_address(collection.contract_address), block):
        raise FreezeRefused(
            f"there is no contract at {collection.contract_address} on chain {collection.chain_id}"
        )
    contract = bind(w3, collection.contract_address)
    return "0x" + bytes(contract.functions.configDigest().call(block_identifier=block)).hex()


def record_freeze(w3: Web3, collection: Collection, block: BlockIdentifier = "latest") -> bool:
    """Record the freeze if the contract holds the prepared digest at ``block``; True when the
    collection is frozen in the database. ``FreezeRefused`` when it holds another digest (a
    freeze not prepared here, or of another config): nothing is recorded, and an operator must
    look."""
    collection = Collection.objects.get(pk=collection.pk)
    if collection.config_digest:
        return True
    digest = on_chain_digest(w3, collection, block)
    if digest == ZERO_DIGEST:
        return False
    if digest != collection.prepared_config_digest:
        raise FreezeRefused(
            f"{collection.slug}: the contract holds config digest {digest}, but the freeze "
            f"prepared here is {collection.prepared_config_digest or '(none)'}; not recorded"
        )
    uri = bind(w3, collection.contract_address).functions.contractURI().call(block_identifier=block)
    recorded = Collection.objects.filter(pk=collection.pk, config_digest="").update(
        config_digest=digest, contract_uri=uri
    )
    if recorded:
        log.info("%s: frozen on-chain with config digest %s, %s", collection.slug, digest, uri)
    return True


def withdraw_freeze(w3: Web3, collection: Collection) -> None:
    """Forget the prepared freeze so the config can change again; refused once the contract
    holds a digest (then ``record_freeze`` applies)."""
    if on_chain_digest(w3, collection) != ZERO_DIGEST:
        raise FreezeRefused(
            f"{collection.slug}: the contract is already frozen; the prepared freeze cannot be "
            "withdrawn"
        )
    Collection.objects.filter(pk=collection.pk, config_digest="").update(
        prepared_config_digest="", prepared_contract_uri=""
    )
