"""Deploying a collection's contract and registering the collection with the backend."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from chain.contract import ARTIFACT_PATH, VrfSettings, bind, deploy_contract
from chain.errors import MissingKey
from chain.freeze import ZERO_DIGEST, on_chain_digest, prepare_freeze, record_freeze
from chain.models import Chain, Wallet
from chain.sender import send_transaction
from chain.vrf import add_consumer, local_coordinator
from chain.wallets import publisher, sales_manager
from generation.canonical import canonical_json
from generation.collection_config import placeholder_metadata
from generation.models import Collection
from generation.pin_ledger import pin_bytes
from ipfs.profiles import LEGACY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionSpec:
    """What a new collection is made of; the defaults are the embedded demo collection."""

    slug: str = "reference"
    name: str = "Reference Collection"
    symbol: str = "REF"
    description: str = "Rendered on demand by the reference models (untrained, for testing)."
    price_wei: int = 10**16
    max_supply: int = 1000
    confirmations: int = 2
    model_dir: str = ""
    model_config_dir: str = ""  # for a single-file checkpoint (see Collection.model_config_dir)
    scheduler: str = ""  # a diffusers scheduler class name; "" for the model's own
    clip_dir: str = ""
    prompt_template: str = "a small abstract painting, token {token_id} of {collection}"
    negative_prompt: str = "blurry"
    style_prompt: str = "an abstract painting"
    # The reference CLIP model is untrained, so its scores say nothing about style: the
    # reference collection accepts every score. A real collection sets a real threshold.
    clip_threshold: float = -1.0
    steps: int = 4
    guidance: float = 7.5
    width: int = 64
    height: int = 64
    max_attempts: int = 3
    max_per_tx: int = 20
    max_per_wallet: int = 0  # 0: no cap
    royalty_bps: int = 500
    rarity: dict = field(default_factory=lambda: {"mode": "none", "categories": []})
    trait_margin: float = 0.0
    uniqueness_threshold: float | None = None
    near_duplicate_threshold: float | None = None
    style_images: list[str] = field(default_factory=list)
    style_images_threshold: float | None = None
    # the latency levers (generation/render_levers.py)
    lora_adapters: list[dict] = field(default_factory=list)
    quantization: str = ""
    onnx_dir: str = ""
    publish_weights: bool = False  # pin the weights to IPFS, their CIDs frozen with the config
    seed_delay: int = 0  # future-block seeds: the block this many blocks after the mint
    # Chainlink VRF v2.5 seeds: a coordinator address, or "local" for Chainlink's mock deployed on
    # the local chain with a funded subscription (chain/vrf.py); "" for block-hash seeds
    vrf_coordinator: str = ""
    vrf_subscription_id: int = 0
    vrf_key_hash: str = ""
    # the contract metadata's pictures (generation/collection_image.py): paths inside
    # MODEL_ROOTS; no image: the first style image, or a card with the name
    image: str = ""
    banner_image: str = ""
    # the sale (docs/contract.md#sales): tokens kept out of every sale for the admin's airdrops;
    # who withdrawn proceeds go to ("" for the deployer), or a payment split of [address, basis
    # points] pairs summing to 10,000, deployed as a PaymentSplit that also takes the royalties
    reserve: int = 0
    payee: str = ""
    splits: list = field(default_factory=list)


def sale_spec_problems(spec: CollectionSpec) -> list[str]:
    """What is wrong with ``spec``'s sale settings, checked before anything is sent."""
    from eth_utils import is_address

    problems = []
    if not 0 <= spec.reserve <= spec.max_supply:
        problems.append(f"reserve {spec.reserve} must be from 0 to max_supply ({spec.max_supply})")
    if spec.payee and not is_address(spec.payee):
        problems.append(f"payee {spec.payee!r} is not an Ethereum address")
    if spec.splits:
        if spec.payee:
            problems.append("give payee or splits, not both: a split is the payee")
        pairs = [p for p in spec.splits if isinstance(p, list | tuple) and len(p) == 2]
        if len(pairs) != len(spec.splits):
            problems.append('splits must be [["0xADDRESS", basis points], ...]')
        for address, bps in pairs:
            if not is_address(address):
                problems.append(f"split payee {address!r} is not an Ethereum address")
            if not isinstance(bps, int) or bps <= 0:
                problems.append(f"split share {bps!r} of {address} must be a positive whole number")
        total = sum(b for _, b in pairs if isinstance(b, int))
        if total != 10_000:
            problems.append(f"split shares sum to {total}, not 10,000 basis points")
        if len({str(a).lower() for a, _ in pairs}) != len(pairs):
            problems.append("a split names one payee twice")
    return problems


def reference_world_spec(*, style: str | None = None, **overrides: Any) -> CollectionSpec:
    """The collection ``make run`` deploys: the reference world's rarity table, prompts, style
    images and calibrated gate, rendered and checked by its trained models in
    ``settings.REFERENCE_WORLD_DIR`` (generation/reference_world/collection.py). With ``style``,
    the same world with that style's LoRA adapter and a gate that checks the style
    (``styled_collection_fields``). ``overrides`` replace fields (a test's slug or price)."""
    from generation.reference_world.collection import (
        styled_collection_fields,
        world_collection_fields,
    )

    root = Path(settings.REFERENCE_WORLD_DIR)
    fields = (
        world_collection_fields(root) if style is None else styled_collection_fields(root, style)
    )
    return CollectionSpec(**{**fields, **overrides})


def vrf_settings(w3: Web3, deployer_key: str, spec: CollectionSpec) -> VrfSettings | None:
    """The VRF coordinator and subscription ``spec`` asks for: none, Chainlink's mock deployed
    on the local chain with a funded subscription ("local"), or the ones it names."""
    if not spec.vrf_coordinator:
        return None
    if spec.vrf_coordinator == "local":
        return local_coordinator(w3, deployer_key).settings()
    return VrfSettings(
        coordinator=spec.vrf_coordinator,
        subscription_id=spec.vrf_subscription_id,
        key_hash=bytes.fromhex(spec.vrf_key_hash.removeprefix("0x")),
    )


def add_vrf_consumer(w3: Web3, deployer_key: str, vrf: VrfSettings, address: str) -> None:
    """Add the new contract to the subscription when the deployer owns it; otherwise say who must
    (a request from a contract the subscription does not list reverts)."""
    try:
        add_consumer(w3, deployer_key, vrf, address)
    except (
        Exception
    ) as exc:  # the coordinator refuses a deployer that does not own the subscription
        log.warning(
            "could not add %s as a consumer of VRF subscription %d (%s): its owner must add it "
            "(vrf.chain.link) before the first seed commit",
            address,
            vrf.subscription_id,
            exc,
        )


def deploy_collection(w3: Web3, deployer_key: str, spec: CollectionSpec) -> Collection:
    """Deploy the contract, hand the committer and publisher roles over to this backend's
    accounts (the deployer renounces its own), record the collection, and freeze its generation
    config on-chain so minting can open."""
    chain_id = w3.eth.chain_id
    admin = Account.from_key(deployer_key)
    vrf = vrf_settings(w3, deployer_key, spec)
    # pinned on each IPFS target and recorded in the ledger, its CID checked like every other
    placeholder_cid = pin_bytes(
        canonical_json(placeholder_metadata(spec.name)),
        name=f"{spec.slug}-placeholder.json",
        profile=LEGACY,
    )
    address, block = deploy_contract(
        w3,
        deployer_key,
        name=spec.name,
        symbol=spec.symbol,
        price_wei=spec.price_wei,
        max_supply=spec.max_supply,
        max_per_tx=spec.max_per_tx,
        max_per_wallet=spec.max_per_wallet,
        admin=admin.address,
        reserve=spec.reserve,
        payee=spec.payee or None,
        splits=[(address, int(bps)) for address, bps in spec.splits],
        royalty_bps=spec.royalty_bps,
        placeholder_uri=f"ipfs://{placeholder_cid}",
        seed_delay=spec.seed_delay,
        vrf=vrf,
    )
    if vrf is not None:
        add_vrf_consumer(w3, deployer_key, vrf, address)
    _hand_over_roles(w3, deployer_key, address, chain_id)
    _register_chain(w3, chain_id, spec.confirmations)
    models_dir = Path(settings.REFERENCE_MODELS_DIR)
    collection = Collection.objects.create(
        slug=spec.slug,
        name=spec.name,
        description=spec.description,
        chain_id=chain_id,
        contract_address=address,
        deployment_block=block,
        model_dir=spec.model_dir or str(models_dir / "diffusion"),
        model_config_dir=spec.model_config_dir,
        scheduler=spec.scheduler,
        clip_dir=spec.clip_dir or str(models_dir / "clip"),
        prompt_template=spec.prompt_template,
        negative_prompt=spec.negative_prompt,
        style_prompt=spec.style_prompt,
        clip_threshold=spec.clip_threshold,
        steps=spec.steps,
        guidance=spec.guidance,
        width=spec.width,
        height=spec.height,
        max_attempts=spec.max_attempts,
        max_supply=spec.max_supply,
        rarity=spec.rarity,
        trait_margin=spec.trait_margin,
        uniqueness_threshold=spec.uniqueness_threshold,
        near_duplicate_threshold=spec.near_duplicate_threshold,
        style_images=list(spec.style_images),
        style_images_threshold=spec.style_images_threshold,
        lora_adapters=list(spec.lora_adapters),
        quantization=spec.quantization,
        onnx_dir=spec.onnx_dir,
        publish_weights=spec.publish_weights,
        seed_delay=spec.seed_delay,
        vrf_coordinator=vrf.coordinator if vrf else "",
        vrf_subscription_id=str(vrf.subscription_id) if vrf else "",
        vrf_key_hash="0x" + vrf.key_hash.hex() if vrf else "",
        image=spec.image,
        banner_image=spec.banner_image,
    )
    send_freeze(w3, admin, collection)
    collection.refresh_from_db()
    log.info("deployed %s at %s in block %d", spec.slug, address, block)
    return collection


def send_freeze(w3: Web3, admin: LocalAccount, collection: Collection) -> str:
    """Prepare (if needed), send the freeze from ``admin`` and record it; the transaction hash.
    For the command and the local deploy paths, which hold the admin key."""
    call = prepare_freeze(collection, w3)
    if on_chain_digest(w3, collection) != ZERO_DIGEST:
        # a signer got there first (or a crash came between the send and the record)
        record_freeze(w3, collection)
        return ""
    contract = bind(w3, collection.contract_address)
    digest = bytes.fromhex(call.config_digest.removeprefix("0x"))
    receipt = send_transaction(
        w3, admin, contract.functions.freezeConfig(digest, call.contract_uri)
    )
    record_freeze(w3, collection)
    return receipt["transactionHash"].to_0x_hex()


def _register_chain(w3: Web3, chain_id: int, confirmations: int) -> Chain:
    endpoint = str(w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    chain, created = Chain.objects.get_or_create(
        chain_id=chain_id, defaults={"rpc_urls": endpoint, "confirmations": confirmations}
    )
    if not created and endpoint not in chain.urls():
        log.warning("chain %d: adding %s to its RPC endpoints %s", chain_id, endpoint, chain.urls())
        chain.rpc_urls = ",".join([*chain.urls(), endpoint])
        chain.save(update_fields=["rpc_urls", "updated_at"])
    return chain


def _hand_over_roles(w3: Web3, deployer_key: str, address: str, chain_id: int) -> None:
    """Grant the publisher and sales roles to this backend's accounts, then renounce the
    deployer's own (the constructor gives the admin every role): the admin key then cannot
    publish or run the sale, the publisher key can do nothing but publish, and the sales key
    nothing but the sale's controls (phases, price, pause, airdrops, withdrawals to the payee the
    admin chose). ``commitSeeds`` needs no role (anyone may call it: it
    reads only chain data); the backend's committer account sends it from a key of its own.

    When a role's configured account is the deployer itself, the deployer keeps that role: there
    is no one else to hand it to. ``deploy_collection`` warns, and production should not do it.
    """
    contract = bind(w3, address)
    admin = Account.from_key(deployer_key)
    holders = [("PUBLISHER_ROLE", publisher(chain_id))]
    try:
        holders.append(("SALES_ROLE", sales_manager(chain_id)))
    except MissingKey:
        # a collection whose sale is run by the admin's multisig, not by this backend
        log.warning(
            "%s: no SALES_MANAGER key: the deployer keeps SALES_ROLE, and the admin's sale page "
            "cannot send until that role is granted to a key the sale worker holds",
            address,
        )
    for role_name, account in holders:
        role = getattr(contract.functions, role_name)().call()
        if not contract.functions.hasRole(role, account.address).call():
            send_transaction(w3, admin, contract.functions.grantRole(role, account.address))
        if account.address == admin.address:
            log.warning(
                "%s: the deployer %s keeps %s: it is also the configured account for that role "
                "(set a key of its own for the role to separate them)",
                address, admin.address, role_name,
            )  # fmt: skip
        elif contract.functions.hasRole(role, admin.address).call():
            send_transaction(w3, admin, contract.functions.renounceRole(role, admin.address))


def forget_chain(chain_id: int) -> int:
    """Drop what the database holds about a chain that was reset (the embedded anvil only)."""
    if chain_id != settings.EMBEDDED_CHAIN_ID:
        raise ValueError(f"refusing to forget chain {chain_id}: only the embedded chain resets")
    with transaction.atomic():
        count, _ = Collection.objects.filter(chain_id=chain_id).delete()
        Wallet.objects.filter(chain_id=chain_id).delete()
        Chain.objects.filter(chain_id=chain_id).delete()
    return count


def write_deployment_file(collection: Collection, *, rpc_url: str, extra: dict[str, Any]) -> dict:
    info = {
        "rpc_url": rpc_url,
        "chain_id": collection.chain_id,
        "contract_address": collection.contract_address,
        "deployment_block": collection.deployment_block,
        "collection": collection.slug,
        "web_url": settings.WEB_URL,
        "ipfs_gateway_url": settings.IPFS_GATEWAY_URL,
        "abi_path": str(ARTIFACT_PATH),
        "contract_uri": collection.contract_uri,
        "config_digest": collection.config_digest,
        **extra,
    }
    path = Path(settings.DEPLOYMENT_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2) + "\n")
    return info
