"""The checks that need only public data: the chain, and the bytes an IPFS gateway serves.

Each check is a plain function that returns a :class:`~verifier.report.Check` (PASS, FAIL with
both values, or SKIPPED with why). A check only builds on data an earlier check verified: when
the metadata does not hash to the on-chain digest, the checks that would read it are SKIPPED,
not failed a second time. The checks that need the model weights are in verifier/rerender.py.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from web3 import Web3

from chain.seeds import derive_seed
from generation.canonical import canonical_json
from generation.render_levers import levers_in
from generation.render_seed import torch_seed_for
from generation.traits import attributes, rarity, render_prompt, token_traits, trait_rarity
from ipfs.cid import canonical_cid, cid_from_sha256, compute_cid, matches_cid
from ipfs.errors import InvalidCID
from ipfs.profiles import LEGACY, PROFILES, CidProfile
from verifier.errors import VerifyError
from verifier.fetching import Gateway
from verifier.report import Check, failed, passed, skipped

SEED_SOURCES = {
    0: "not committed",
    1: "on-chain: blockhash(mintBlock)",
    2: "on-chain: EIP-2935 block hash history",
    3: "LATE: block hash supplied by the admin (commitLateSeeds)",
    4: "Chainlink VRF: a random word the coordinator fulfilled",
    5: "on-chain: blockhash(seedBlock), a block after the mint's (future-block seed)",
    6: "on-chain: EIP-2935 block hash history of the seed block (future-block seed)",
    7: "LATE: seed block hash supplied by the admin (commitLateSeeds; future-block seed)",
}
SEED_SOURCE_VRF = 4
# the VRF v2.5 coordinator's event for a fulfilled request (the same on Chainlink's coordinator
# and its mock): requestId and subId indexed; outputSeed, payment, nativePayment, success,
# onlyPremium in the data
RANDOM_WORDS_FULFILLED = Web3.keccak(
    text="RandomWordsFulfilled(uint256,uint256,uint256,uint96,bool,bool,bool)"
)


@dataclass
class State:
    """What the checks of one token learned so far; ``None`` where it could not be verified.

    Each check reads only what an earlier check verified and records what it verified itself.
    """

    token_id: int
    chain_id: int = 0
    mint_block: int | None = None
    block_hash: bytes | None = None
    seed_block: int | None = None  # the block whose hash seeds the token (mint block + delay)
    seed_block_hash: bytes | None = None
    seed: bytes | None = None  # the contract's
    metadata: dict[str, Any] | None = None  # verified against the on-chain digest
    image: bytes | None = None  # verified against its CID
    config: dict[str, Any] | None = None  # the contract metadata's verified generation object
    collection_name: str = ""
    traits: dict[str, str] | None = None  # recomputed
    weights_ok: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _hex(value: bytes | None) -> str:
    return "0x" + value.hex() if value is not None else "none"


# ------------------------------------------------------------------------------ 1. chain, seed


def check_mint_block(w3: Web3, contract: Any, state: State) -> Check:
    name = "mint_block"
    try:
        state.mint_block = int(contract.functions.mintBlockOf(state.token_id).call())
    except Exception as exc:
        return failed(name, f"the contract does not know token {state.token_id}: {exc}")
    block = w3.eth.get_block(state.mint_block)
    state.block_hash = bytes(block["hash"])
    try:
        state.seed_block = int(contract.functions.seedBlockOf(state.token_id).call())
    except Exception:  # a contract deployed before seed delays existed: the mint block
        state.seed_block = state.mint_block
    if state.seed_block == state.mint_block:
        state.seed_block_hash = state.block_hash
        return passed(name, f"block {state.mint_block}, hash {_hex(state.block_hash)}")
    try:
        state.seed_block_hash = bytes(w3.eth.get_block(state.seed_block)["hash"])
    except Exception as exc:  # web3 raises BlockNotFound for a block the chain has not made
        return failed(
            name,
            f"block {state.mint_block}; its seed block {state.seed_block} is not on the chain "
            f"yet ({type(exc).__name__})",
        )
    return passed(
        name,
        f"block {state.mint_block}, hash {_hex(state.block_hash)}; seed block "
        f"{state.seed_block} (mint block + {state.seed_block - state.mint_block}), hash "
        f"{_hex(state.seed_block_hash)}",
    )


def check_seed(contract: Any, state: State) -> Check:
    name = "seed"
    seed = bytes(contract.functions.seedOf(state.token_id).call())
    source = int(contract.functions.seedSourceOf(state.token_id).call())
    how = SEED_SOURCES.get(source, f"unknown source {source}")
    if source == SEED_SOURCE_VRF:
        return _check_vrf_seed(contract, state, seed)
    if seed == bytes(32):
        return failed(name, "the contract holds no seed for this token (not committed)")
    state.seed = seed
    if state.seed_block_hash is None:
        return skipped(name, "the mint block is unknown")
    which = "block hash"
    if state.seed_block != state.mint_block:
        which = f"hash of block {state.seed_block}"
    expected = derive_seed(state.seed_block_hash, state.token_id)
    if expected != seed:
        return failed(
            name,
            f"contract seed {_hex(seed)} != keccak256({which}, token id) {_hex(expected)} "
            f"from the chain's block {state.seed_block}; committed {how}",
        )
    return passed(name, f"{_hex(seed)} = keccak256({which}, token id); committed {how}")


def _check_vrf_seed(contract: Any, state: State, seed: bytes) -> Check:
    """A VRF seed: keccak256(word ‖ id), and the word delivered by the collection's coordinator
    in a successful fulfilment of the batch's request."""
    name = "seed"
    request_id, word = (int(v) for v in contract.functions.vrfRequestOf(state.token_id).call())
    if word == 0 or seed == bytes(32):
        return failed(name, f"VRF request {request_id} is not fulfilled: the token has no seed")
    state.seed = seed
    word_bytes = word.to_bytes(32, "big")
    expected = derive_seed(word_bytes, state.token_id)
    if expected != seed:
        return failed(
            name,
            f"contract seed {_hex(seed)} != keccak256(random word {_hex(word_bytes)}, token id) "
            f"{_hex(expected)}",
        )
    coordinator = contract.functions.vrfCoordinator().call()
    state.extra["vrf"] = {
        "coordinator": coordinator,
        "request_id": str(request_id),
        "random_word": _hex(word_bytes),
    }
    try:
        fulfilled = contract.events.SeedsFulfilled().get_logs(
            argument_filters={"requestId": request_id}, from_block=state.mint_block or 0
        )
    except Exception as exc:  # a public RPC may cap eth_getLogs' block range
        return passed(
            name,
            f"{_hex(seed)} = keccak256(VRF random word, token id), request {request_id}; the "
            f"fulfilment was not checked: the RPC would not list its events ({exc})",
        )
    if len(fulfilled) != 1 or int(fulfilled[0]["args"]["randomWord"]) != word:
        return failed(name, f"no single SeedsFulfilled event delivers word {_hex(word_bytes)}")
    tx = fulfilled[0]["transactionHash"]
    receipt = contract.w3.eth.get_transaction_receipt(tx)
    answers = [
        log
        for log in receipt["logs"]
        if log["address"] == coordinator
        and log["topics"]
        and bytes(log["topics"][0]) == bytes(RANDOM_WORDS_FULFILLED)
        and int.from_bytes(bytes(log["topics"][1]), "big") == request_id
    ]
    if len(answers) != 1:
        return failed(
            name,
            f"the word for request {request_id} was delivered in {tx.to_0x_hex()}, where the "
            f"coordinator {coordinator} emitted no RandomWordsFulfilled for it",
        )
    _, _, _, success, _ = abi_decode(
        ["uint256", "uint96", "bool", "bool", "bool"], bytes(answers[0]["data"])
    )
    if not success:
        return failed(name, f"the coordinator reports request {request_id}'s callback failed")
    state.extra["vrf"]["fulfil_tx"] = tx.to_0x_hex()
    return passed(
        name,
        f"{_hex(seed)} = keccak256(random word, token id); the word fulfilled VRF request "
        f"{request_id} from coordinator {coordinator} (RandomWordsFulfilled in {tx.to_0x_hex()})",
    )


# ------------------------------------------------------------------------------ 2. metadata, image


def check_metadata_digest(contract: Any, gateway: Gateway, state: State) -> Check:
    name = "metadata_digest"
    digest = bytes(contract.functions.metadataDigestOf(state.token_id).call())
    uri = contract.functions.tokenURI(state.token_id).call()
    if digest == bytes(32):
        return failed(name, f"not published: no digest on-chain, tokenURI is {uri!r}")
    expected_uri = f"ipfs://{cid_from_sha256(digest)}"
    if uri != expected_uri:
        return failed(name, f"tokenURI {uri!r} != the digest's CID {expected_uri!r}")
    try:
        data = gateway.fetch(uri)
    except VerifyError as exc:
        return failed(name, str(exc))
    got = hashlib.sha256(data).digest()
    if got != digest:
        return failed(
            name, f"the gateway's bytes hash to {_hex(got)}, the chain holds {_hex(digest)}"
        )
    try:
        state.metadata = json.loads(data)
    except ValueError as exc:
        return failed(name, f"the metadata hashes right but is not JSON: {exc}")
    state.extra["metadata_bytes"] = data
    return passed(name, f"sha256 {_hex(digest)} = on-chain digest ({uri})")


def check_metadata_record(contract: Any, state: State) -> Check:
    """Whether the token's published digest can still be rewritten (``lockMetadata``), and every
    time it was reopened (``MetadataReopened`` events since the mint): a report that passes
    either way, so a reader sees how final the on-chain record is."""
    name = "metadata_record"
    if state.mint_block is None:
        return skipped(name, "the mint block is unknown")
    try:
        locked: bool | None = bool(contract.functions.metadataLocked().call())
    except Exception:  # a contract deployed before lockMetadata existed
        locked = None
    try:
        events = contract.events.MetadataReopened().get_logs(
            argument_filters={"tokenId": state.token_id}, from_block=state.mint_block
        )
    except Exception as exc:  # a public RPC may cap eth_getLogs' block range
        return skipped(
            name,
            f"the RPC would not list the token's MetadataReopened events since block "
            f"{state.mint_block} ({type(exc).__name__}: {exc}); use an RPC without a log range "
            "limit for the reopen history",
        )
    blocks = sorted(int(event["blockNumber"]) for event in events)
    history = (
        f"reopened {len(blocks)} time{'s' if len(blocks) != 1 else ''} "
        f"(block{'s' if len(blocks) != 1 else ''} {', '.join(map(str, blocks))})"
        if blocks
        else "never reopened"
    )
    if locked is None:
        lock = "this contract has no lockMetadata: the admin can reopen any digest"
    elif locked:
        lock = "locked: no digest of this collection can be reopened"
    else:
        lock = "not locked: the admin can still reopen this digest"
    return passed(name, f"{lock}; {history}")


def check_metadata_canonical(state: State) -> Check:
    name = "metadata_canonical"
    data = state.extra.get("metadata_bytes")
    if state.metadata is None or data is None:
        return skipped(name, "the metadata was not verified")
    again = canonical_json(state.metadata)
    if again != data:
        return failed(name, f"{len(data)} bytes published, {len(again)} bytes canonical")
    return passed(name, "sorted keys, compact separators, UTF-8")


def config_profile(config: dict[str, Any]) -> CidProfile:
    """The CID profile a frozen config names (``cid_profile``; absent: ``legacy``, the only
    one before profiles existed); ``VerifyError`` for one this verifier does not know."""
    record = config.get("cid_profile")
    if record is None:
        return LEGACY
    name = record.get("name") if isinstance(record, dict) else None
    profile = PROFILES.get(str(name))
    if profile is None or profile.record() != record:
        raise VerifyError(f"the frozen config names an unknown CID profile: {record!r}")
    return profile


def check_image(gateway: Gateway, state: State) -> Check:
    """The image's bytes rebuild its CID under the collection's frozen CID profile (under any
    known profile, said so, when the config could not be verified)."""
    name = "image"
    if state.metadata is None:
        return skipped(name, "the metadata was not verified")
    uri = str(state.metadata.get("image", ""))
    if not uri.startswith("ipfs://"):
        return failed(name, f"image {uri!r} is not an ipfs:// URI")
    cid = uri.removeprefix("ipfs://")
    try:
        canonical_cid(cid)
    except InvalidCID as exc:
        return failed(name, str(exc))
    try:
        profile = config_profile(state.config) if state.config is not None else None
        data = gateway.fetch(uri)
    except VerifyError as exc:
        return failed(name, str(exc))
    if profile is None:
        found = matches_cid(data, cid)
        if found is None:
            got = compute_cid(data)
            return failed(name, f"the gateway's {len(data)} bytes have CID {got}, not {cid}")
        state.image = data
        return passed(
            name,
            f"{len(data)} bytes hash to {cid} under the {found.name} CID profile (the frozen "
            "config, which names the collection's profile, was not verified)",
        )
    got = compute_cid(data, profile)
    if got != canonical_cid(cid):
        other = matches_cid(data, cid)
        why = f" (that is its CID under the {other.name} profile)" if other else ""
        return failed(
            name,
            f"the gateway's {len(data)} bytes have CID {got} under the collection's "
            f"{profile.name} CID profile, metadata names {cid}{why}",
        )
    state.image = data
    return passed(name, f"{len(data)} bytes hash to {cid} ({profile.name} CID profile)")


def check_provenance(w3: Web3, contract: Any, state: State) -> Check:
    name = "provenance"
    if state.metadata is None:
        return skipped(name, "the metadata was not verified")
    prov = state.metadata.get("provenance") or {}
    wanted = {
        "chain_id": state.chain_id,
        "contract": contract.address,
        "token_id": str(state.token_id),
        "mint_block_number": state.mint_block,
        "mint_block_hash": _hex(state.block_hash),
        "seed": _hex(state.seed),
    }
    for key, value in (state.extra.get("vrf") or {}).items():
        wanted[f"vrf.{key}"] = value
    if state.seed_block is not None and state.seed_block != state.mint_block:
        wanted["seed_block_number"] = state.seed_block
        wanted["seed_block_hash"] = _hex(state.seed_block_hash)
    wrong = []
    for key, value in wanted.items():
        if key.startswith("vrf."):
            got = (prov.get("vrf") or {}).get(key.removeprefix("vrf."))
        else:
            got = prov.get(key)
        same = str(got).lower() == str(value).lower() if isinstance(value, str) else got == value
        if not same:
            wrong.append(f"{key}: metadata {got!r}, chain {value!r}")
    if wrong:
        return failed(name, "; ".join(wrong))
    seed_block = ", seed block" if "seed_block_number" in wanted else ""
    seed_block += ", VRF request and word" if state.extra.get("vrf") else ""
    return passed(
        name, f"chain id, contract, token id, mint block, block hash{seed_block} and seed agree"
    )


# ------------------------------------------------------------------------------ 3. config, traits


def check_config_digest(contract: Any, gateway: Gateway, state: State) -> Check:
    name = "config_digest"
    digest = bytes(contract.functions.configDigest().call())
    uri = contract.functions.contractURI().call()
    if digest == bytes(32):
        return failed(name, "the contract's config is not frozen (configDigest is 0x0)")
    try:
        document = json.loads(gateway.fetch(uri))
    except (VerifyError, ValueError) as exc:
        return failed(name, f"contractURI {uri!r}: {exc}")
    config = document.get("generation") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        return failed(name, f"contractURI {uri!r} has no generation object")
    got = hashlib.sha256(canonical_json(config)).digest()
    if got != digest:
        return failed(
            name, f"the generation object hashes to {_hex(got)}, the chain holds {_hex(digest)}"
        )
    try:
        coordinator = str(contract.functions.vrfCoordinator().call())
    except Exception:  # a contract deployed before VRF seeds existed
        coordinator = "0x" + "00" * 20
    frozen_vrf = (config.get("vrf") or {}).get("coordinator") or "0x" + "00" * 20
    if frozen_vrf.lower() != coordinator.lower():
        return failed(
            name,
            f"the frozen config's VRF coordinator is {frozen_vrf}, the contract's {coordinator}",
        )
    if state.seed_block is not None and state.mint_block is not None:
        delay = state.seed_block - state.mint_block
        if int(config.get("seed_delay", 0)) != delay:
            return failed(
                name,
                f"the frozen config's seed_delay is {config.get('seed_delay', 0)}, the "
                f"contract seeds from {delay} block(s) after the mint",
            )
    state.config = config
    return passed(name, f"sha256 of the generation object = {_hex(digest)} ({uri})")


def check_traits(contract: Any, state: State) -> Check:
    name = "traits"
    if state.config is None:
        return skipped(name, "the collection config was not verified")
    if state.metadata is None:
        return skipped(name, "the metadata was not verified")
    if state.seed is None:
        return skipped(name, "the token has no seed")
    table, supply = state.config["rarity"], state.config["max_supply"]
    mode = table.get("mode", "none")
    k = state.token_id
    if mode == "quota":
        seeds = [bytes(contract.functions.seedOf(i).call()) for i in range(1, k)] + [state.seed]
        missing = [i for i, s in enumerate(seeds, start=1) if s == bytes(32)]
        if missing:
            return skipped(name, f"quota replay needs the seeds of tokens {missing}")
    else:
        seeds = [bytes(32)] * (k - 1) + [state.seed]
    traits = token_traits(k, seeds, table)
    fmt, problems = _shown_traits_problems(state.metadata, traits, table, supply)
    prov = state.metadata.get("provenance") or {}
    if prov.get("traits") != traits:
        problems.append(f"provenance traits {prov.get('traits')!r} != recomputed {traits!r}")
    want_rarity = rarity(traits, table, max_supply=supply) if traits else None
    if prov.get("rarity") != want_rarity:
        problems.append(f"provenance rarity {prov.get('rarity')!r} != recomputed {want_rarity!r}")
    if problems:
        return failed(name, f"{fmt}: " + "; ".join(problems))
    state.traits = traits
    replay = f" (quota replay over tokens 1..{k})" if mode == "quota" else ""
    return passed(name, f"{mode}: {traits or 'no traits'}{replay}; {fmt}")


# The two shapes a token's attributes were published in. Published bytes are on chain for good,
# so a token from before issue 19 still verifies, in the shape it has.
FORMAT_OPENSEA = "metadata format: OpenSea attributes, rarity beside them"
FORMAT_RARITY_IN_ATTRIBUTES = "metadata format: rarity inside each attribute (before issue 19)"


def _shown_traits_problems(
    metadata: dict[str, Any], traits: dict[str, str], table: dict[str, Any], supply: int
) -> tuple[str, list[str]]:
    """Which format the metadata's ``attributes`` (and ``rarity``) are in, and where they
    differ from the recomputed traits."""
    shown = metadata.get("attributes")
    want = attributes(traits, table, max_supply=supply) if traits else []
    figures = trait_rarity(traits, table, max_supply=supply) if traits else {}
    # the top-level rarity came with the format (an empty one for a token without traits)
    legacy = "rarity" not in metadata
    problems = []
    if legacy:
        want = [{**a, "rarity": figures[a["trait_type"]]} for a in want]
    elif metadata["rarity"] != figures:
        problems.append(f"rarity {metadata['rarity']!r} != recomputed {figures!r}")
    if shown != want:
        problems.append(f"attributes {shown!r} != recomputed {want!r}")
    return (FORMAT_RARITY_IN_ATTRIBUTES if legacy else FORMAT_OPENSEA), problems


def check_render_params(state: State) -> Check:
    name = "render_params"
    if state.config is None or state.metadata is None or state.seed is None:
        return skipped(name, "the config, the metadata or the seed was not verified")
    if state.traits is None:
        return skipped(name, "the traits were not verified")
    config = state.config
    prov = state.metadata.get("provenance") or {}
    render, model = prov.get("render") or {}, prov.get("model") or {}
    attempt = int(prov.get("attempt", -1))
    prompt = render_prompt(
        config["prompt_template"],
        state.traits,
        config["rarity"],
        token_id=state.token_id,
        collection=state.collection_name,
    )
    wanted = {
        "prompt": (render.get("prompt"), prompt),
        "negative_prompt": (render.get("negative_prompt"), config["negative_prompt"]),
        "steps": (render.get("steps"), config["steps"]),
        "guidance": (render.get("guidance"), config["guidance"]),
        "width": (render.get("width"), config["width"]),
        "height": (render.get("height"), config["height"]),
        "scheduler": (model.get("scheduler"), config["model"]["scheduler"]),
        "model fingerprint": (model.get("fingerprint"), config["model"]["fingerprint"]),
        "attempt < max_attempts": (0 <= attempt < config["max_attempts"], True),
        # adapters, int8, the ONNX files, the student's teacher: as frozen, or none
        "latency levers": (levers_in(model), levers_in(config["model"])),
    }
    if 0 <= attempt < 2**32:
        wanted["torch_seed"] = (
            str(prov.get("torch_seed")),
            str(torch_seed_for(state.seed, attempt)),
        )
    wrong = [f"{k}: recorded {a!r}, expected {b!r}" for k, (a, b) in wanted.items() if a != b]
    if wrong:
        return failed(name, "; ".join(wrong))
    return passed(
        name, f"prompt, settings and torch seed follow the frozen config (attempt {attempt})"
    )


def check_clip_thresholds(state: State) -> Check:
    name = "clip_thresholds"
    if state.metadata is None:
        return skipped(name, "the metadata was not verified")
    clip = (state.metadata.get("provenance") or {}).get("clip") or {}
    scores, thresholds = clip.get("scores") or {}, clip.get("thresholds") or {}
    problems = []
    if state.config is not None:
        frozen = state.config["clip"]
        if thresholds.get("style") != frozen["threshold"]:
            problems.append(
                f"style threshold recorded {thresholds.get('style')!r}, frozen {frozen['threshold']!r}"
            )
        if clip.get("model_fingerprint") != frozen["fingerprint"]:
            problems.append(
                f"CLIP fingerprint recorded {clip.get('model_fingerprint')!r}, "
                f"frozen {frozen['fingerprint']!r}"
            )
        # near duplicates: a config frozen before the check existed has no such key, and none
        # of its tokens records the score; one that has it records its threshold with each
        # token compared with earlier ones (the first token has none to compare with)
        near = (state.config.get("near_duplicates") or {}).get("threshold")
        near = None if near is None else round(float(near), 6)  # the gate rounds thresholds
        if "near_duplicate_min" in thresholds and thresholds["near_duplicate_min"] != near:
            problems.append(
                f"near-duplicate threshold recorded {thresholds['near_duplicate_min']!r}, "
                f"frozen {near!r}"
            )
    for key, limit in thresholds.items():
        score = scores.get(key)
        if score is None:
            problems.append(f"{key}: threshold {limit} without a score")
        elif key == "uniqueness_max":
            if not score < limit:
                problems.append(f"{key}: {score} is not below {limit}")
        elif key == "near_duplicate_min":
            if not score > limit:
                problems.append(f"{key}: {score} is not above {limit}")
        elif key.endswith(":margin"):
            if not (score > 0 and score >= limit):
                problems.append(f"{key}: {score} does not clear {limit}")
        elif score < limit:
            problems.append(f"{key}: {score} < {limit}")
    if "style" not in thresholds:
        problems.append("no style score recorded")
    if problems:
        return failed(name, "; ".join(problems))
    shown = ", ".join(f"{k} {scores.get(k)} vs {v}" for k, v in thresholds.items())
    return passed(name, f"recorded scores meet the recorded thresholds: {shown}")
