"""Rebuilding the database's view of a collection from the chain and IPFS alone.

The recovery path when the database is lost and no backup is usable (docs/deploy.md, "Recovery
runbook"): ``manage.py rebuild_collection``. Everything that shapes the collection's output is
on-chain or on IPFS: ``contractURI()`` names the contract metadata (ERC-7572) whose
``generation`` object is the frozen config (generation/collection_config.py: this module is its
inverse), checked against ``configDigest()``; each token's mint and transfers are ``Transfer``
logs, its seed is ``seedOf``, and a published token's metadata is named by ``tokenURI`` and
checked against ``metadataDigestOf``; its provenance holds the render record, traits and CLIP
scores. Paths to models are not public, only their fingerprints: the operator names the local
folders, and they are refused unless they rebuild the very config the chain committed.

Everything is read and checked first; then one database transaction writes the collection, its
tokens (published ones FINAL or PUBLISHED, the others SEED_COMMITTED or CONFIRMED, so the
pipeline carries them on), their transfers, the listener's cursor and one ``TokenEvent`` each.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import Web3RPCError

from chain.contract import bind, call_per_token
from chain.errors import ChainError
from chain.heads import confirmed_block
from chain.listener import (
    TRANSFER_TOPIC,
    ZERO_TOPIC,
    Listener,
    RawLog,
    _is_range_refusal,
    _record_transfers,
)
from chain.models import Chain, ChainCursor
from chain.seed_commit import (
    fulfilment_tx,
    seed_block_waiting_note,
    vrf_seed,
    vrf_waiting_note,
)
from chain.seeds import derive_seed
from generation.canonical import canonical_json
from generation.models import Collection, Token, TokenEvent
from generation.pin_ledger import adopt_collection
from ipfs.cid import cid_from_sha256

log = logging.getLogger(__name__)
Status = Token.Status
Fetch = Callable[[str], bytes]

REBUILT = (
    "rebuilt from the chain and IPFS by manage.py rebuild_collection (the stage history before "
    "it is not on-chain)"
)
# Keys of a token's provenance that are its render record (generation/pipeline.py render_record)
RECORD_KEYS = ("attempt", "torch_seed", "model", "render", "clip", "traits", "software")
# The frozen config's model-block keys that name a latency lever (generation/render_levers.py)
LEVER_KEYS = ("adapters", "quantization", "runtime", "distilled_from")


class RebuildRefused(ChainError, ValueError):
    """The rebuild cannot go on: nothing has been written."""


@dataclass(frozen=True)
class LocalModels:
    """The operator's local copies of what the frozen config names only by fingerprint."""

    model_dir: str
    clip_dir: str
    model_config_dir: str = ""
    style_images: Sequence[str] = ()
    adapters: Sequence[str] = ()
    onnx_dir: str = ""


@dataclass
class Rebuilt:
    collection: Collection
    deployment_block: int
    confirmed: int
    by_status: dict[str, int] = field(default_factory=dict)
    transfers: int = 0

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.by_status.items()))
        return (
            f"{self.collection.slug}: {sum(self.by_status.values())} tokens ({counts or 'none'}), "
            f"{self.transfers} transfers, blocks {self.deployment_block}-{self.confirmed}"
        )


# ------------------------------------------------------------------------------ the collection


def deployment_block(w3: Web3, address: str, head: int) -> int:
    """The block that created the contract at ``address``: the first with code there, found by
    binary search on ``eth_getCode`` (needs an archive node for old blocks)."""
    checksummed = to_checksum_address(address)
    low, high = 0, head
    if not w3.eth.get_code(checksummed, head):
        raise RebuildRefused(f"no contract at {address} at block {head}")
    while low < high:
        middle = (low + high) // 2
        if w3.eth.get_code(checksummed, middle):
            high = middle
        else:
            low = middle + 1
    return low


def collection_from_config(
    document: dict[str, Any], *, slug: str, chain_id: int, address: str, local: LocalModels
) -> Collection:
    """The (unsaved) collection whose ``generation_config`` is the document's ``generation``
    object: the inverse of generation/collection_config.py ``generation_config``."""
    from generation.collection_config import generation_config
    from generation.reference_models import model_fingerprint
    from generation.rendering import scheduler_class_name
    from ipfs.profiles import PROFILES

    config = document["generation"]
    model, clip = config["model"], config["clip"]
    collection = Collection(
        slug=slug,
        name=document.get("name", ""),
        description=document.get("description", ""),
        chain_id=chain_id,
        contract_address=address,
        model_dir=local.model_dir,
        model_config_dir=local.model_config_dir,
        clip_dir=local.clip_dir,
    )
    # Fingerprints first: a wrong folder is the likeliest mistake, and the cheapest to name.
    for what, path, frozen in (
        ("--model-dir", collection.model_path(), model["fingerprint"]),
        ("--clip-dir", collection.clip_path(), clip["fingerprint"]),
    ):
        if not path.exists():
            raise RebuildRefused(f"{what} {path} does not exist")
        found = model_fingerprint(path)
        if found != frozen:
            raise RebuildRefused(
                f"{what} {path} has fingerprint {found}; the frozen config names {frozen}"
            )
    scheduler = model["scheduler"]
    own = scheduler_class_name(collection.model_path(), collection.model_config_path(), "")
    collection.scheduler = "" if scheduler == own else scheduler
    adapters = model.get("adapters", [])
    if len(adapters) != len(local.adapters):
        raise RebuildRefused(
            f"the frozen config names {len(adapters)} LoRA adapter(s); give each with --adapter "
            f"(in order), not {len(local.adapters)}"
        )
    collection.lora_adapters = [
        {"path": path, "scale": frozen["scale"]}
        for path, frozen in zip(local.adapters, adapters, strict=True)
    ]
    collection.quantization = (model.get("quantization") or {}).get("name", "")
    if "runtime" in model and not local.onnx_dir:
        raise RebuildRefused("the frozen config renders with an ONNX export: give --onnx-dir")
    collection.onnx_dir = local.onnx_dir if "runtime" in model else ""
    if len(clip["style_images"]) != len(local.style_images):
        raise RebuildRefused(
            f"the frozen config names {len(clip['style_images'])} style image(s) by sha256; "
            f"give each with --style-image (in order), not {len(local.style_images)}"
        )
    collection.style_images = list(local.style_images)
    for attr in ("style_prompt", "style_images_threshold"):
        setattr(collection, attr, clip[attr])
    collection.clip_threshold = clip["threshold"]
    for attr in (
        "prompt_template", "negative_prompt", "steps", "guidance", "width", "height",
        "max_attempts", "max_supply", "rarity", "trait_margin", "uniqueness_threshold",
    ):  # fmt: skip
        setattr(collection, attr, config[attr])
    collection.seed_delay = config.get("seed_delay", 0)
    vrf = config.get("vrf") or {}
    collection.vrf_coordinator = vrf.get("coordinator", "")
    collection.vrf_subscription_id = vrf.get("subscription_id", "")
    collection.vrf_key_hash = vrf.get("key_hash", "")
    profile = config.get("cid_profile")
    collection.cid_profile = profile["name"] if profile else "legacy"
    if collection.cid_profile not in PROFILES:
        raise RebuildRefused(f"the frozen config names an unknown CID profile: {profile!r}")
    collection.publish_weights = "weights" in config
    near = config.get("near_duplicates")
    collection.near_duplicate_threshold = near["threshold"] if near else None
    try:
        collection.full_clean(validate_unique=False)
    except ValidationError as exc:
        raise RebuildRefused(f"the rebuilt collection is not valid: {exc}") from exc
    # The proof of the inversion: the collection gives back the committed config, byte for byte.
    again = generation_config(collection)
    if canonical_json(again) != canonical_json(config):
        differ = sorted(k for k in set(again) | set(config) if again.get(k) != config.get(k))
        raise RebuildRefused(
            f"the local files and the frozen config rebuild another config (differs in "
            f"{', '.join(differ)}): check --model-dir, --clip-dir and the other local paths"
        )
    return collection


# ------------------------------------------------------------------------------ the tokens


def _get_logs(
    listener: Listener, collection: Collection, start: int, end: int
) -> tuple[list[RawLog], dict[int, str]]:
    """The contract's Transfer logs of blocks ``start``-``end`` and the block hashes the
    listener's cursor needs, read as the listener reads them (block hashes checked, a refused
    range halved)."""
    logs: list[RawLog] = []
    blocks: dict[int, str] = {}
    step = listener.chain.log_range
    while start <= end:
        stop = min(end, start + step - 1)
        try:
            found, hashes = listener._read_range(collection, start, stop)
        except Web3RPCError as exc:
            if not _is_range_refusal(exc) or stop == start:
                raise
            step = max(1, (stop - start + 1) // 2)
            continue
        logs += found
        blocks.update(hashes)
        start = stop + 1
    return logs, blocks


def _event_logs(
    contract: Any, name: str, start: int, end: int, step: int, **filters: Any
) -> list[Any]:
    found: list[Any] = []
    event = getattr(contract.events, name)()
    for first in range(start, end + 1, step):
        found += event.get_logs(
            from_block=first, to_block=min(end, first + step - 1), argument_filters=filters or None
        )
    return found


@dataclass
class _Published:
    tx_hash: str
    block_number: int


def _publishes(w3: Web3, contract: Any, start: int, end: int, step: int) -> dict[int, _Published]:
    """token id → the latest ``publish`` transaction that set its digest (ERC-4906
    ``MetadataUpdate``/``BatchMetadataUpdate`` logs of ``publish`` calls only: a reopen or a new
    placeholder emits them too)."""
    selector = keccak(text="publish(uint256[],bytes32[])")[:4]
    calls: dict[str, bool] = {}
    found: dict[int, _Published] = {}
    entries = [
        (entry, [int(entry["args"]["_tokenId"])])
        for entry in _event_logs(contract, "MetadataUpdate", start, end, step)
    ] + [
        (entry, list(range(entry["args"]["_fromTokenId"], entry["args"]["_toTokenId"] + 1)))
        for entry in _event_logs(contract, "BatchMetadataUpdate", start, end, step)
    ]
    entries.sort(key=lambda pair: (pair[0]["blockNumber"], pair[0]["logIndex"]))
    for entry, ids in entries:
        tx_hash = entry["transactionHash"].to_0x_hex()
        if tx_hash not in calls:
            calls[tx_hash] = bytes(w3.eth.get_transaction(tx_hash)["input"])[:4] == selector
        if calls[tx_hash]:
            for token_id in ids:
                found[token_id] = _Published(tx_hash, int(entry["blockNumber"]))
    return found


def _published_fields(
    collection: Collection, token: Token, digest: bytes, uri: str, fetch: Fetch
) -> dict[str, Any]:
    """A published token's fields from its metadata on IPFS, checked against the chain."""
    from PIL import Image

    from generation.clip_gate import embedding_to_bytes
    from generation.near_duplicates import signature

    cid = cid_from_sha256(digest)
    if uri != f"ipfs://{cid}":
        raise RebuildRefused(f"token {token.token_id}: tokenURI {uri!r} is not its digest's CID")
    data = fetch(cid)
    if hashlib.sha256(data).digest() != digest:
        raise RebuildRefused(f"token {token.token_id}: the metadata does not hash to its digest")
    metadata = json.loads(data)
    provenance = metadata["provenance"]
    mint = (provenance["chain_id"], provenance["contract"].lower(), provenance["token_id"])
    if mint != (collection.chain_id, collection.contract_address.lower(), str(token.token_id)):
        raise RebuildRefused(f"token {token.token_id}: its metadata names another token: {mint}")
    if provenance["mint_tx"] != token.mint_tx_hash:
        raise RebuildRefused(
            f"token {token.token_id}: its metadata names mint {provenance['mint_tx']}, the chain "
            f"{token.mint_tx_hash}"
        )
    record = {key: provenance[key] for key in RECORD_KEYS}
    record["torch_seed"] = int(record["torch_seed"])
    image_cid = str(metadata["image"]).removeprefix("ipfs://")
    image = fetch(image_cid)
    with Image.open(io.BytesIO(image)) as opened:
        near = signature(opened.convert("RGB"))
    fields: dict[str, Any] = {
        "attempt": record["attempt"],
        "render_record": record,
        "traits": provenance["traits"],
        "clip_scores": provenance["clip"],
        "image_cid": image_cid,
        "image_sha256": hashlib.sha256(image).hexdigest(),
        "image_signature": embedding_to_bytes(near),
        "metadata_cid": cid,
        "metadata_sha256": digest.hex(),
    }
    if "vrf" in provenance:
        fields["seed_record"] = {k: v for k, v in provenance["vrf"].items() if k != "coordinator"}
    if "seed_block_hash" in provenance:
        fields["seed_block_hash"] = provenance["seed_block_hash"]
    return fields


def _mints(collection: Collection, logs: list[RawLog]) -> tuple[list[Token], list[RawLog]]:
    """The mint rows the logs hold (as the listener records them), and the later transfers."""
    contract = collection.contract_address.lower()
    tokens: dict[int, Token] = {}
    transfers = []
    for entry in logs:
        if entry.address != contract or len(entry.topics) != 4:
            continue
        if entry.topics[0] != TRANSFER_TOPIC:
            continue
        if entry.topics[1] != ZERO_TOPIC:
            transfers.append(entry)
            continue
        token_id = int(entry.topics[3], 16)
        tokens[token_id] = Token(
            collection=collection,
            token_id=token_id,
            owner=to_checksum_address("0x" + entry.topics[2][-40:]),
            mint_tx_hash=entry.tx_hash,
            mint_log_index=entry.log_index,
            mint_block_number=entry.block_number,
            mint_block_hash=entry.block_hash,
            status=Status.CONFIRMED,
        )
    return [tokens[k] for k in sorted(tokens)], transfers


# ------------------------------------------------------------------------------ the whole


def rebuild_collection(
    w3: Web3,
    *,
    contract_address: str,
    slug: str,
    local: LocalModels,
    fetch: Fetch,
    from_block: int | None = None,
    rpc_url: str = "",
    say: Callable[[str], None] = log.info,
) -> Rebuilt:
    """Read the collection at ``contract_address`` from the chain and IPFS (``fetch``: the bytes
    of a CID, checked against it) and record it as ``slug``; ``RebuildRefused`` before anything
    is written when it cannot be done faithfully."""
    if not Web3.is_address(contract_address):
        raise RebuildRefused(f"{contract_address!r} is not an address")
    address = to_checksum_address(contract_address)
    chain_id = w3.eth.chain_id
    if Collection.objects.filter(slug=slug).exists():
        raise RebuildRefused(
            f"a collection {slug!r} already exists: the rebuild writes a collection the database "
            "lost, and never over one it has (delete it first if it is a broken leftover)"
        )
    held = Collection.objects.filter(chain_id=chain_id, contract_address__iexact=address).first()
    if held is not None:
        raise RebuildRefused(f"the database already holds {address} on chain {chain_id}: {held}")
    head = w3.eth.block_number
    if not w3.eth.get_code(address):
        raise RebuildRefused(f"no contract at {address} on chain {chain_id}")
    contract = bind(w3, address)

    digest = bytes(contract.functions.configDigest().call())
    if digest == bytes(32):
        raise RebuildRefused(
            f"{address}'s config is not frozen (configDigest is 0x0): its generation config is "
            "not on-chain, so the collection cannot be rebuilt from public data"
        )
    uri = contract.functions.contractURI().call()
    document = json.loads(fetch(uri.removeprefix("ipfs://").split("/")[0]))
    config = document.get("generation") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise RebuildRefused(f"contractURI {uri!r} has no generation object")
    if hashlib.sha256(canonical_json(config)).digest() != digest:
        raise RebuildRefused(
            f"contractURI {uri!r}'s generation object does not hash to configDigest 0x{digest.hex()}"
        )
    try:
        collection = collection_from_config(
            document, slug=slug, chain_id=chain_id, address=address, local=local
        )
    except (KeyError, TypeError) as exc:
        raise RebuildRefused(f"contractURI {uri!r}: the generation object lacks {exc}") from exc
    collection.config_digest = "0x" + digest.hex()
    collection.contract_uri = uri
    say(f"config 0x{digest.hex()} rebuilt from {uri} with the local models")

    start = from_block if from_block is not None else deployment_block(w3, address, head)
    collection.deployment_block = start
    chain = Chain.objects.filter(chain_id=chain_id).first() or Chain(
        chain_id=chain_id, rpc_urls=rpc_url
    )
    _, confirmed = confirmed_block(w3, chain)
    listener = Listener(w3, chain, on_confirmed=lambda c, pks: None)
    logs, blocks = _get_logs(listener, collection, start, confirmed)
    tokens, transfers = _mints(collection, logs)
    say(f"{len(tokens)} mints and {len(transfers)} transfers in blocks {start}-{confirmed}")

    step = chain.log_range
    seed_txs = {
        int(entry["args"]["tokenId"]): entry["transactionHash"].to_0x_hex()
        for entry in _event_logs(contract, "SeedCommitted", start, head, step)
    }
    publishes = _publishes(w3, contract, start, head, step)
    delay = collection.seed_delay
    vrf_requests = (
        call_per_token(w3, contract, "vrfRequestOf", [t.token_id for t in tokens])
        if collection.vrf_coordinator
        else {}
    )
    fulfilments: dict[int, str] = {}
    for token in tokens:
        seed = bytes(contract.functions.seedOf(token.token_id).call())
        seed_block = token.mint_block_number + delay
        if collection.vrf_coordinator:
            # the request, its word and its fulfilment, as the seed commit recorded them; a
            # request not fulfilled yet says so, as it did
            request_id, word = (int(v) for v in vrf_requests[token.token_id])
            if word:
                if request_id not in fulfilments:
                    fulfilments[request_id] = fulfilment_tx(contract, request_id, start)
                token.expected_seed, token.seed_record = vrf_seed(
                    token.token_id, request_id, word, fulfilments[request_id]
                )
            elif request_id:
                token.failure_reason = vrf_waiting_note([request_id])
        else:
            if delay and seed_block <= confirmed:
                token.seed_block_hash = w3.eth.get_block(seed_block)["hash"].to_0x_hex()
            elif delay:
                token.failure_reason = seed_block_waiting_note(seed_block, confirmed)
            if not delay or token.seed_block_hash:
                block_hash = token.seed_block_hash or token.mint_block_hash
                token.expected_seed = (
                    "0x" + derive_seed(bytes.fromhex(block_hash[2:]), token.token_id).hex()
                )
        if seed != bytes(32):
            token.seed = "0x" + seed.hex()
            token.seed_tx_hash = seed_txs.get(token.token_id, "")
            token.status = Status.SEED_COMMITTED
        published = bytes(contract.functions.metadataDigestOf(token.token_id).call())
        if published == bytes(32):
            continue
        token_uri = contract.functions.tokenURI(token.token_id).call()
        try:
            fields = _published_fields(collection, token, published, token_uri, fetch)
        except RebuildRefused:
            raise
        except (KeyError, TypeError, ValueError) as exc:  # JSON, or not this project's keys
            raise RebuildRefused(
                f"token {token.token_id}: its metadata at {token_uri} is not what this project "
                f"publishes ({type(exc).__name__}: {exc})"
            ) from exc
        for name, value in fields.items():
            setattr(token, name, value)
        publish = publishes.get(token.token_id)
        if publish is not None:
            token.publish_tx_hash = publish.tx_hash
            token.publish_block_number = publish.block_number
        final = publish is not None and publish.block_number <= confirmed
        token.status = Status.FINAL if final else Status.PUBLISHED

    with transaction.atomic():
        if chain.pk is None:
            chain.save()
        collection.save()
        Token.objects.bulk_create(tokens, batch_size=2000)
        moved = _record_transfers(collection, transfers, {})
        if confirmed in blocks:
            recent = [
                [n, h] for n, h in sorted(blocks.items()) if n > confirmed - chain.finality_depth
            ]
            ChainCursor.objects.create(
                collection=collection,
                block_number=confirmed,
                block_hash=blocks[confirmed],
                recent_blocks=recent,
            )
        # Written directly, not through generation.events.record: the webhooks and live pages
        # heard of these tokens' stages when they happened, and a rebuild is not news to them.
        TokenEvent.objects.bulk_create(
            [TokenEvent(token=token, status=token.status, detail=REBUILT) for token in tokens],
            batch_size=2000,
        )
        adopt_collection(collection)  # the pin check asks each target for its CIDs again
    by_status: dict[str, int] = {}
    for token in tokens:
        by_status[token.status] = by_status.get(token.status, 0) + 1
    return Rebuilt(collection, start, confirmed, by_status, moved)


def fetch_from_backend() -> Fetch:
    """The bytes of a CID from the configured IPFS backend (``IPFS_BACKEND``), each checked
    against its CID by the backend."""
    from ipfs.backends import pinner_from_settings

    return pinner_from_settings().get
