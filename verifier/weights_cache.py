"""``--fetch-weights``: the weights a collection published on IPFS, fetched by CID and cached.

A collection that publishes its weights (``publish_weights``, generation/published_weights.py)
names them in its frozen config's ``weights`` block: a CID beside each fingerprint. The
``published_weights`` check fetches each from the gateways given, checking every directory
block and every file against its CID (ipfs/tree.py), into a cache folder keyed by CID, and
hands the re-render checks the resulting :class:`~verifier.rerender.Weights`. Nothing here is
trusted: the fingerprint check that follows hashes the fetched files again and compares them
with the token's record and the frozen config.

The cache (``--weights-cache``, default ``$MINTVERIFY_CACHE`` or ``~/.cache/mintverify``) holds
``ipfs/<cid>`` (a folder) or ``ipfs/<cid>/<name>`` (a single file). An entry is used only if
its files still give its CID, so a cache edited by hand or cut short by a crash is fetched again.
Every CID is rebuilt under the CID profile the frozen config names (``cid_profile``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ipfs.cid import canonical_cid
from ipfs.errors import IpfsError
from ipfs.profiles import LEGACY, CidProfile
from ipfs.tree import build_tree, fetch_tree
from verifier.checks import State, config_profile
from verifier.errors import VerifyError
from verifier.fetching import Gateway
from verifier.report import Check, failed, passed, skipped
from verifier.rerender import Weights

DEFAULT_MAX_BYTES = 64 * 2**30  # what one published item may take (an SDXL folder is ~14 GiB)


def default_cache_dir() -> Path:
    found = os.environ.get("MINTVERIFY_CACHE")
    if found:
        return Path(found)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mintverify"


@dataclass(frozen=True)
class FetchWeights:
    """Ask the verifier to fetch the published weights instead of reading local ones."""

    cache_dir: Path | None = None
    max_bytes: int = DEFAULT_MAX_BYTES


class WeightsCache:
    """Published items by CID (under ``profile``), fetched from ``gateway`` into ``root/ipfs``."""

    def __init__(
        self,
        root: Path,
        gateway: Gateway,
        max_bytes: int = DEFAULT_MAX_BYTES,
        profile: CidProfile = LEGACY,
    ) -> None:
        self.root = Path(root) / "ipfs"
        self.gateway = gateway
        self.max_bytes = max_bytes
        self.profile = profile
        self.fetched: list[str] = []  # CIDs fetched in this run (the others came from the cache)

    def get(self, entry: dict[str, Any]) -> Path:
        """The local path of a ``weights`` entry (``cid``, and ``name`` for a single file)."""
        cid = canonical_cid(str(entry.get("cid")))
        name = entry.get("name")
        if name is not None and (not isinstance(name, str) or "/" in name or name in ("", "..")):
            raise VerifyError(f"weights entry {cid} has an unusable file name {name!r}")
        home = self.root / cid
        path = home / name if name else home
        if path.exists():
            try:
                if build_tree(path, profile=self.profile).root == cid:
                    return path
            except (OSError, IpfsError):
                pass
            shutil.rmtree(home) if home.is_dir() else home.unlink()
        fetch_tree(
            cid,
            path,
            get_block=self.gateway.fetch_block,
            get_file=self.gateway.fetch,
            max_bytes=self.max_bytes,
            profile=self.profile,
        )
        self.fetched.append(cid)
        return path


def check_published_weights(
    fetch: FetchWeights, gateway: Gateway, state: State
) -> tuple[Check, Weights | None]:
    """Fetch the weights the frozen config names, and the Weights to re-render with."""
    name = "published_weights"
    if state.config is None:
        return skipped(name, "the collection config was not verified"), None
    published = state.config.get("weights")
    if not isinstance(published, dict):
        return skipped(name, "the collection does not publish its weights"), None
    try:
        profile = config_profile(state.config)
    except VerifyError as exc:
        return failed(name, str(exc)), None
    cache = WeightsCache(fetch.cache_dir or default_cache_dir(), gateway, fetch.max_bytes, profile)
    try:
        diffusion = cache.get(published["diffusion"])
        configs = published.get("diffusion_configs")
        weights = Weights(
            diffusion,
            cache.get(published["clip"]),
            cache.get(configs) if configs else None,
            adapters=tuple(cache.get(a) for a in published.get("adapters", [])),
            onnx=cache.get(published["onnx"]) if published.get("onnx") else None,
        )
        wrong = []
        frozen = state.config["clip"].get("style_images", [])
        style_images = [cache.get(entry) for entry in published.get("style_images", [])]
        if len(style_images) != len(frozen):
            wrong.append(f"{len(style_images)} style images published, {len(frozen)} frozen")
        for i, (path, entry) in enumerate(zip(style_images, frozen, strict=False)):
            digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != entry:
                wrong.append(f"style image {i} ({path.parent.name}) is {digest}, frozen {entry}")
        weights = replace(weights, style_images=tuple(style_images))
    except (KeyError, TypeError) as exc:
        return failed(name, f"the config's weights block is malformed: {exc!r}"), None
    except (VerifyError, IpfsError, OSError) as exc:
        return failed(name, f"cannot fetch the published weights: {exc}"), None
    if wrong:
        return failed(name, "; ".join(wrong)), None
    items = 2 + bool(configs) + len(weights.adapters) + bool(weights.onnx)
    items += len(published.get("style_images", []))
    how = f"{len(cache.fetched)} fetched, {items - len(cache.fetched)} from the cache"
    return passed(name, f"{items} items by CID, every block checked ({how}; {cache.root})"), weights
