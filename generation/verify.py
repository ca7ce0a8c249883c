"""Verify a token's provenance from public data alone: the chain, an IPFS gateway, the weights.

Nothing here reads the project's database: the contract (over JSON-RPC) says the mint block,
the seed, the metadata digest and the frozen config digest; the gateway serves the bytes those
digests name; the optional weights let the image and its CLIP scores be recomputed. Each check
is a plain function that returns a :class:`Check` (PASS, FAIL with both values, or SKIPPED with
why). A check only builds on data an earlier check verified: when the metadata does not hash to
the on-chain digest, the checks that would read it are SKIPPED, not failed a second time.

Run it as ``mintverify`` / ``python -m generation.verify`` / ``manage.py verify_token``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from web3 import Web3

PASS, FAIL, SKIPPED = "PASS", "FAIL", "SKIPPED"
SEED_SOURCES = {
    0: "not committed",
    1: "on-chain: blockhash(mintBlock)",
    2: "on-chain: EIP-2935 block hash history",
    3: "LATE: block hash supplied by the admin (commitLateSeeds)",
}
PUBLIC_GATEWAY = "https://ipfs.io"  # the last resort when no gateway of the project answers
PIXEL_TOLERANCE = 1.0  # mean absolute difference per channel value (0-255) a re-render may show
CLIP_TOLERANCE = 1e-4  # how far a recomputed CLIP score may be from the recorded one
FETCH_TIMEOUT = 30.0


class VerifyError(ValueError):
    """Bad input to the verifier (not a failed check): an unreachable RPC, a missing folder."""


@dataclass
class Check:
    name: str
    status: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def passed(name: str, detail: str) -> Check:
    return Check(name, PASS, detail)


def failed(name: str, detail: str) -> Check:
    return Check(name, FAIL, detail)


def skipped(name: str, reason: str) -> Check:
    return Check(name, SKIPPED, reason)


@dataclass
class Weights:
    """The weights to recompute with: the diffusion model (folder or single file) and CLIP."""

    diffusion: Path
    clip: Path
    config_dir: Path | None = None  # a single-file checkpoint's component configs

    @classmethod
    def from_folder(cls, folder: Path) -> Weights:
        folder = Path(folder)
        diffusion, clip = folder / "diffusion", folder / "clip"
        missing = [str(p) for p in (diffusion, clip) if not p.exists()]
        if missing:
            raise VerifyError(
                f"weights folder {folder} lacks {', '.join(missing)} "
                "(expected diffusion/ and clip/ as the reference models have them)"
            )
        return cls(diffusion, clip)


@dataclass
class _State:
    """What the checks learned so far; ``None`` where it could not be verified."""

    token_id: int
    chain_id: int = 0
    mint_block: int | None = None
    block_hash: bytes | None = None
    seed: bytes | None = None  # the contract's
    metadata: dict[str, Any] | None = None  # verified against the on-chain digest
    image: bytes | None = None  # verified against its CID
    config: dict[str, Any] | None = None  # the contract metadata's verified generation object
    collection_name: str = ""
    traits: dict[str, str] | None = None  # recomputed
    weights_ok: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _pure() -> Any:
    """The project's pure helpers live in modules that import the Django models (never queried
    here): configure settings first when run standalone."""
    import django
    from django.apps import apps

    if not apps.ready:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mintsite.settings")
        django.setup()
    from generation import metadata

    return metadata


def canonical_json(value: Any) -> bytes:
    return _pure().canonical_json(value)  # type: ignore[no-any-return]


def _hex(value: bytes | None) -> str:
    return "0x" + value.hex() if value is not None else "none"


class Gateway:
    """Fetches ``<gateway>/ipfs/<cid>`` from the first of ``urls`` that serves it (each URL
    given with or without ``/ipfs``).

    Only a gateway that cannot be reached or does not answer 200 is passed over: bytes that
    come back are what the checks hash, so a gateway serving wrong bytes fails the check, it is
    not routed around. ``served`` lists the gateways that answered, in order.
    """

    def __init__(self, urls: str | Sequence[str], client: httpx.Client | None = None) -> None:
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls:
            raise VerifyError("no IPFS gateway given")
        self.bases = [url.rstrip("/").removesuffix("/ipfs") for url in urls]
        self.client = client or httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=True)
        self.served: list[str] = []

    def fetch(self, uri: str) -> bytes:
        cid = uri.removeprefix("ipfs://").split("/")[0]
        errors = []
        for base in self.bases:
            url = f"{base}/ipfs/{cid}"
            try:
                response = self.client.get(url)
            except httpx.HTTPError as exc:
                errors.append(f"cannot fetch {url}: {type(exc).__name__}: {exc}")
                continue
            if response.status_code != 200:
                errors.append(f"{url} answered HTTP {response.status_code}")
                continue
            if base not in self.served:
                self.served.append(base)
            return response.content
        raise VerifyError("; ".join(errors))


def default_gateways(project_gateway: str | None = None) -> list[str]:
    """The gateways tried when none is given: the project's own (``project_gateway``, else
    ``$IPFS_GATEWAY_URL``, else the one a running ``make run`` wrote into
    ``var/run/deployment.json``), then a public one."""
    found = project_gateway or os.environ.get("IPFS_GATEWAY_URL")
    if not found:
        var = Path(os.environ.get("MINT_VAR_DIR") or "var")
        try:
            found = json.loads((var / "run" / "deployment.json").read_text())["ipfs_gateway_url"]
        except (OSError, ValueError, KeyError, TypeError):
            found = None
    return [found, PUBLIC_GATEWAY] if found and found != PUBLIC_GATEWAY else [PUBLIC_GATEWAY]


class Models:
    """Loaded models, kept for every token of one run (``--all`` loads each model once)."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[Any, ...], Any] = {}

    def renderer(self, weights: Weights, device: str, dtype: str | None) -> Any:
        from generation.rendering import Renderer

        key = ("render", weights.diffusion, weights.config_dir, device, dtype)
        if key not in self._loaded:
            self._loaded[key] = Renderer(
                weights.diffusion, device, config_dir=weights.config_dir, dtype=dtype
            )
        return self._loaded[key]

    def scorer(self, weights: Weights, device: str) -> Any:
        from generation.clip_gate import ClipScorer

        key = ("clip", weights.clip, device)
        if key not in self._loaded:
            self._loaded[key] = ClipScorer(weights.clip, device)
        return self._loaded[key]


# ------------------------------------------------------------------------------ 1. chain, seed


def check_mint_block(w3: Web3, contract: Any, state: _State) -> Check:
    name = "mint_block"
    try:
        state.mint_block = int(contract.functions.mintBlockOf(state.token_id).call())
    except Exception as exc:
        return failed(name, f"the contract does not know token {state.token_id}: {exc}")
    block = w3.eth.get_block(state.mint_block)
    state.block_hash = bytes(block["hash"])
    return passed(name, f"block {state.mint_block}, hash {_hex(state.block_hash)}")


def check_seed(contract: Any, state: _State) -> Check:
    from chain.seeds import derive_seed

    name = "seed"
    seed = bytes(contract.functions.seedOf(state.token_id).call())
    source = int(contract.functions.seedSourceOf(state.token_id).call())
    how = SEED_SOURCES.get(source, f"unknown source {source}")
    if seed == bytes(32):
        return failed(name, "the contract holds no seed for this token (not committed)")
    state.seed = seed
    if state.block_hash is None:
        return skipped(name, "the mint block is unknown")
    expected = derive_seed(state.block_hash, state.token_id)
    if expected != seed:
        return failed(
            name,
            f"contract seed {_hex(seed)} != keccak256(block hash, token id) {_hex(expected)} "
            f"from the chain's block {state.mint_block}; committed {how}",
        )
    return passed(name, f"{_hex(seed)} = keccak256(block hash, token id); committed {how}")


# ------------------------------------------------------------------------------ 2. metadata, image


def check_metadata_digest(contract: Any, gateway: Gateway, state: _State) -> Check:
    from ipfs.cid import cid_from_sha256

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


def check_metadata_canonical(state: _State) -> Check:
    name = "metadata_canonical"
    data = state.extra.get("metadata_bytes")
    if state.metadata is None or data is None:
        return skipped(name, "the metadata was not verified")
    again = canonical_json(state.metadata)
    if again != data:
        return failed(name, f"{len(data)} bytes published, {len(again)} bytes canonical")
    return passed(name, "sorted keys, compact separators, UTF-8")


def check_image(gateway: Gateway, state: _State) -> Check:
    from ipfs.cid import compute_cid

    name = "image"
    if state.metadata is None:
        return skipped(name, "the metadata was not verified")
    uri = str(state.metadata.get("image", ""))
    if not uri.startswith("ipfs://"):
        return failed(name, f"image {uri!r} is not an ipfs:// URI")
    cid = uri.removeprefix("ipfs://")
    try:
        data = gateway.fetch(uri)
    except VerifyError as exc:
        return failed(name, str(exc))
    got = compute_cid(data)
    if got != cid:
        return failed(name, f"the gateway's {len(data)} bytes have CID {got}, metadata names {cid}")
    state.image = data
    return passed(name, f"{len(data)} bytes hash to {cid}")


def check_provenance(w3: Web3, contract: Any, state: _State) -> Check:
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
    wrong = []
    for key, value in wanted.items():
        got = prov.get(key)
        same = str(got).lower() == str(value).lower() if isinstance(value, str) else got == value
        if not same:
            wrong.append(f"{key}: metadata {got!r}, chain {value!r}")
    if wrong:
        return failed(name, "; ".join(wrong))
    return passed(name, "chain id, contract, token id, mint block, block hash and seed agree")


# ------------------------------------------------------------------------------ 3. config, traits


def check_config_digest(contract: Any, gateway: Gateway, state: _State) -> Check:
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
    state.config = config
    return passed(name, f"sha256 of the generation object = {_hex(digest)} ({uri})")


def check_traits(contract: Any, state: _State) -> Check:
    from generation.traits import attributes, rarity, token_traits

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
    want_attrs = attributes(traits, table, max_supply=supply) if traits else []
    prov = state.metadata.get("provenance") or {}
    problems = []
    if state.metadata.get("attributes") != want_attrs:
        problems.append(
            f"attributes {state.metadata.get('attributes')!r} != recomputed {want_attrs!r}"
        )
    if prov.get("traits") != traits:
        problems.append(f"provenance traits {prov.get('traits')!r} != recomputed {traits!r}")
    want_rarity = rarity(traits, table, max_supply=supply) if traits else None
    if prov.get("rarity") != want_rarity:
        problems.append(f"provenance rarity {prov.get('rarity')!r} != recomputed {want_rarity!r}")
    if problems:
        return failed(name, "; ".join(problems))
    state.traits = traits
    replay = f" (quota replay over tokens 1..{k})" if mode == "quota" else ""
    return passed(name, f"{mode}: {traits or 'no traits'}{replay}")


def check_render_params(state: _State) -> Check:
    from generation.rendering import torch_seed_for
    from generation.traits import render_prompt

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


def check_clip_thresholds(state: _State) -> Check:
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
    for key, limit in thresholds.items():
        score = scores.get(key)
        if score is None:
            problems.append(f"{key}: threshold {limit} without a score")
        elif key == "uniqueness_max":
            if not score < limit:
                problems.append(f"{key}: {score} is not below {limit}")
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


# ------------------------------------------------------------------------------ 4. with weights


def check_model_fingerprint(weights: Weights | None, state: _State) -> Check:
    from generation.reference_models import model_fingerprint

    name = "model_fingerprint"
    if weights is None:
        return skipped(name, "no weights given (--weights)")
    if state.metadata is None:
        return skipped(name, "the metadata was not verified")
    prov = state.metadata.get("provenance") or {}
    recorded = {
        "diffusion": (prov.get("model") or {}).get("fingerprint"),
        "clip": (prov.get("clip") or {}).get("model_fingerprint"),
    }
    if state.config is not None:
        frozen = {
            "diffusion": state.config["model"]["fingerprint"],
            "clip": state.config["clip"]["fingerprint"],
        }
    else:
        frozen = recorded
    actual = {
        "diffusion": model_fingerprint(weights.diffusion),
        "clip": model_fingerprint(weights.clip),
    }
    wrong = []
    for key in actual:
        if actual[key] != recorded[key] or actual[key] != frozen[key]:
            wrong.append(
                f"{key}: weights {actual[key]}, recorded {recorded[key]}, frozen {frozen[key]}"
            )
    if wrong:
        return failed(name, "; ".join(wrong))
    state.weights_ok = True
    return passed(name, f"diffusion {actual['diffusion']}, clip {actual['clip']}")


def _torch_device(recorded: str | None, device: str | None) -> str:
    import torch

    if device:
        return device
    if recorded and recorded.startswith("cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def check_rerender(
    weights: Weights | None,
    state: _State,
    *,
    device: str | None = None,
    dtype: str | None = None,
    tolerance: float = PIXEL_TOLERANCE,
    models: Models | None = None,
) -> Check:
    import numpy as np
    from PIL import Image

    from generation.rendering import RenderParams, png_bytes

    name = "rerender"
    if weights is None:
        return skipped(name, "no weights given (--weights)")
    if not state.weights_ok:
        return skipped(name, "the weights do not match the recorded fingerprints")
    if state.image is None or state.metadata is None or state.seed is None:
        return skipped(name, "the published image, the metadata or the seed was not verified")
    prov = state.metadata["provenance"]
    render, model = prov["render"], prov["model"]
    recorded_dtype = model.get("dtype") or None
    dtype = dtype or recorded_dtype
    where = _torch_device(model.get("device"), device)
    renderer = (models or Models()).renderer(weights, where, dtype)
    params = RenderParams(
        prompt=render["prompt"],
        negative_prompt=render["negative_prompt"],
        steps=int(render["steps"]),
        guidance=float(render["guidance"]),
        width=int(render["width"]),
        height=int(render["height"]),
        scheduler=model.get("scheduler", ""),
    )
    data = png_bytes(renderer.render(params, state.seed, int(prov["attempt"])))
    precision = dtype or "default dtype"
    if dtype != recorded_dtype:
        precision += f" (recorded: {recorded_dtype or 'not recorded'})"
    how = f"{where}, {precision}, torch seed {prov['torch_seed']}"
    if data == state.image:
        return passed(name, f"bit-exact re-render ({how})")
    ours = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
    theirs = np.asarray(Image.open(io.BytesIO(state.image)).convert("RGB"), dtype=np.int16)
    if ours.shape != theirs.shape:
        return failed(name, f"re-render is {ours.shape}, published image {theirs.shape}")
    diff = np.abs(ours - theirs)
    measured = (
        f"max {int(diff.max())}, mean {float(diff.mean()):.4f} (tolerance: mean <= {tolerance})"
    )
    if float(diff.mean()) <= tolerance:
        return passed(name, f"not bit-exact, within tolerance: {measured} ({how})")
    return failed(name, f"re-render differs from the published image: {measured} ({how})")


def check_clip_scores(
    weights: Weights | None,
    state: _State,
    *,
    device: str | None = None,
    tolerance: float = CLIP_TOLERANCE,
    models: Models | None = None,
) -> Check:
    from PIL import Image

    from generation.clip_gate import TraitCheck
    from generation.clip_gate import check_image as gate

    name = "clip_scores"
    if weights is None:
        return skipped(name, "no weights given (--weights)")
    if not state.weights_ok:
        return skipped(name, "the weights do not match the recorded fingerprints")
    if state.image is None or state.metadata is None or state.config is None:
        return skipped(name, "the published image, the metadata or the config was not verified")
    if state.traits is None:
        return skipped(name, "the traits were not verified")
    clip, config = state.metadata["provenance"]["clip"], state.config
    scorer = (models or Models()).scorer(weights, device or "cpu")
    checks = [
        TraitCheck(
            c["name"], state.traits[c["name"]], {o["name"]: o["prompt"] for o in c["options"]}
        )
        for c in config["rarity"].get("categories", [])
        if c.get("verify")
    ]
    result = gate(
        scorer,
        Image.open(io.BytesIO(state.image)).convert("RGB"),
        config["clip"]["style_prompt"],
        config["clip"]["threshold"],
        traits=checks,
        trait_margin=config["trait_margin"],
    )
    recorded = clip.get("scores") or {}
    compared, wrong = [], []
    for key, value in result.scores.items():
        if key not in recorded:
            wrong.append(f"{key}: recomputed {value}, not recorded")
            continue
        compared.append(key)
        if abs(recorded[key] - value) > tolerance:
            wrong.append(f"{key}: recorded {recorded[key]}, recomputed {value}")
    if not result.passed:
        wrong.extend(result.reasons)
    if wrong:
        return failed(name, f"(tolerance {tolerance}) " + "; ".join(wrong))
    left = sorted(set(recorded) - set(compared))
    note = f"; not recomputable here: {', '.join(left)}" if left else ""
    return passed(
        name,
        f"{', '.join(f'{k} {result.scores[k]}' for k in compared)} within {tolerance} of the "
        f"record and above the thresholds{note}",
    )


# ------------------------------------------------------------------------------ driver


def _weights(weights: Path | str | Weights | None) -> Weights | None:
    if weights is None or isinstance(weights, Weights):
        return weights
    return Weights.from_folder(Path(weights))


def verify_token(
    rpc_url: str,
    contract: str,
    token_id: int,
    gateway: str | Sequence[str] | Gateway,
    weights: Path | str | Weights | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    pixel_tolerance: float = PIXEL_TOLERANCE,
    clip_tolerance: float = CLIP_TOLERANCE,
    models: Models | None = None,
) -> list[Check]:
    """Every check of one token, in order; raises ``VerifyError`` for unusable input.

    ``gateway``: one URL, several tried in order, or a :class:`Gateway`. ``dtype`` re-renders
    in another precision than the recorded one (the distance is then measured, not bit-exact).
    ``models`` keeps loaded models between calls.
    """
    from chain.contract import bind

    resolved = _weights(weights)
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": FETCH_TIMEOUT}))
    try:
        chain_id = w3.eth.chain_id
    except Exception as exc:
        raise VerifyError(f"cannot reach the RPC at {rpc_url}: {exc}") from exc
    if not Web3.is_address(contract):
        raise VerifyError(f"{contract!r} is not an address")
    if not w3.eth.get_code(Web3.to_checksum_address(contract)):
        raise VerifyError(f"no contract at {contract} on chain {chain_id}")
    bound = bind(w3, contract)
    if not isinstance(gateway, Gateway):
        gateway = Gateway(gateway)
    models = models or Models()
    state = _State(token_id=token_id, chain_id=chain_id)
    state.collection_name = bound.functions.name().call()
    return [
        check_mint_block(w3, bound, state),
        check_seed(bound, state),
        check_metadata_digest(bound, gateway, state),
        check_metadata_canonical(state),
        check_image(gateway, state),
        check_provenance(w3, bound, state),
        check_config_digest(bound, gateway, state),
        check_traits(bound, state),
        check_render_params(state),
        check_clip_thresholds(state),
        check_model_fingerprint(resolved, state),
        check_rerender(
            resolved, state, device=device, dtype=dtype, tolerance=pixel_tolerance, models=models
        ),
        check_clip_scores(resolved, state, device=device, tolerance=clip_tolerance, models=models),
    ]


def verdict(checks: Sequence[Check]) -> str:
    failures = [c.name for c in checks if c.failed]
    if failures:
        return f"FAIL: {', '.join(failures)}"
    skipped_count = sum(c.status == SKIPPED for c in checks)
    return f"PASS ({len(checks) - skipped_count} checks passed, {skipped_count} skipped)"


def render_table(token_id: int, checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"token {token_id}", f"  {'check'.ljust(width)}  {'result':7}  detail"]
    for c in checks:
        lines.append(f"  {c.name.ljust(width)}  {c.status:7}  {c.detail}")
    lines.append(f"  verdict: {verdict(checks)}")
    return "\n".join(lines)


DESCRIPTION = (
    "Verify a token's provenance from the chain, an IPFS gateway and (optionally) the model "
    "weights; never the project's database."
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mintverify", description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser, *, project_gateway: str | None = None) -> None:
    """The command line, shared by ``mintverify`` and ``manage.py verify_token``."""
    gateways = default_gateways(project_gateway)
    p.add_argument("--rpc", required=True, help="JSON-RPC URL of the chain")
    p.add_argument("--contract", required=True, help="the collection's contract address")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--token", type=int, help="token id")
    which.add_argument("--all", action="store_true", help="every minted token")
    p.add_argument(
        "--gateway",
        action="append",
        help="IPFS gateway URL; repeat it to try several in order (default: "
        f"{', then '.join(gateways)})",
    )
    p.set_defaults(default_gateways=gateways)
    p.add_argument("--weights", type=Path, help="folder with diffusion/ and clip/")
    p.add_argument("--diffusion", type=Path, help="diffusion weights (instead of --weights)")
    p.add_argument("--clip", type=Path, help="CLIP weights (instead of --weights)")
    p.add_argument("--model-config", type=Path, help="component configs of a single-file model")
    p.add_argument("--device", help="torch device for the re-render (default: as recorded)")
    p.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        help="precision of the re-render (default: as recorded); another one is compared "
        "within --pixel-tolerance",
    )
    p.add_argument(
        "--pixel-tolerance",
        type=float,
        default=PIXEL_TOLERANCE,
        help="mean absolute difference (0-255 scale) a re-render that is not bit-exact may show "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--clip-tolerance",
        type=float,
        default=CLIP_TOLERANCE,
        help="how far a recomputed CLIP score may be from the recorded one (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace, out: Any = None) -> int:
    """Run the parsed arguments; print the result to ``out``; 0 if nothing FAILED, 1 if a
    check failed, 2 for unusable input."""
    out = out or sys.stdout
    weights: Path | Weights | None = args.weights
    if args.diffusion or args.clip:
        if not (args.diffusion and args.clip) or args.weights:
            print("error: give --weights, or both --diffusion and --clip", file=sys.stderr)
            return 2
        weights = Weights(args.diffusion, args.clip, args.model_config)
    try:
        resolved = _weights(weights)
        if args.all:
            from chain.contract import bind

            w3 = Web3(Web3.HTTPProvider(args.rpc))
            token_ids = list(range(1, bind(w3, args.contract).functions.totalSupply().call() + 1))
        else:
            token_ids = [args.token]
        gateway = Gateway(args.gateway or args.default_gateways)
        models = Models()
        results = {
            token_id: verify_token(
                args.rpc,
                args.contract,
                token_id,
                gateway,
                resolved,
                device=args.device,
                dtype=args.dtype,
                pixel_tolerance=args.pixel_tolerance,
                clip_tolerance=args.clip_tolerance,
                models=models,
            )
            for token_id in token_ids
        }
    except VerifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # web3 raises many kinds for a bad RPC answer
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    any_failed = any(c.failed for checks in results.values() for c in checks)
    if args.json:
        document = {
            "contract": args.contract,
            "verdict": "FAIL" if any_failed else "PASS",
            "gateways": gateway.served,
            "tokens": [
                {"token_id": t, "verdict": verdict(cs), "checks": [asdict(c) for c in cs]}
                for t, cs in results.items()
            ],
        }
        print(json.dumps(document, indent=2), file=out)
    else:
        print("\n\n".join(render_table(t, cs) for t, cs in results.items()), file=out)
        if len(results) > 1:
            print(f"\n{len(results)} tokens: {'FAIL' if any_failed else 'PASS'}", file=out)
        if len(gateway.bases) > 1:
            print(f"gateways that served: {', '.join(gateway.served) or 'none'}", file=out)
    return 1 if any_failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = run(parser().parse_args(argv))
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # the reader went away (``mintverify ... | head``): no traceback, and no second error
        # when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
