"""A collection's weights on IPFS, so anyone can re-render its tokens (``publish_weights``).

With ``Collection.publish_weights`` on, the frozen config gains a ``weights`` block naming,
beside each fingerprint the config already holds, the CID of the files it fingerprints:

- ``diffusion``: the model folder (a UnixFS directory) or single-file checkpoint; for a
  checkpoint, ``diffusion_configs``: the component configs' folder (``model_config_dir``);
- ``clip``: the CLIP model folder;
- ``adapters``: each LoRA adapter file, in the config's order; ``onnx``: the ONNX export folder;
- ``style_images``: each style reference image, in the config's order.

CIDs are those of ``ipfs add -r --cid-version=1 --raw-leaves`` under the collection's CID
profile (``scheme``: :func:`ipfs.tree.tree_scheme`), so anyone can pin the same files and get
the same CIDs. A single file also records its
``name``: a loader picks the format by the file's suffix. :func:`pin_weights` pins every item
before the freeze with the configured backend, each root checked against the config's CID;
``mintverify --fetch-weights`` fetches them by CID from any gateway (verifier/weights_cache.py).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from generation.models import Collection
from ipfs.backends.pinner import Pinner
from ipfs.profiles import CidProfile
from ipfs.tree import Tree, build_tree, tree_scheme

log = logging.getLogger(__name__)


def _items(collection: Collection) -> list[tuple[str, Path]]:
    """Every published item as ``(key, path)``; list keys end in ``[i]``."""
    model = collection.model_path()
    items = [("diffusion", model)]
    config_dir = collection.model_config_path()
    if model.is_file() and config_dir is not None:
        items.append(("diffusion_configs", config_dir))
    items.append(("clip", collection.clip_path()))
    levers = collection.levers()
    items += [(f"adapters[{i}]", path) for i, (path, _) in enumerate(levers.adapters)]
    if levers.onnx_dir is not None:
        items.append(("onnx", Path(levers.onnx_dir)))
    items += [(f"style_images[{i}]", path) for i, path in enumerate(collection.style_image_paths())]
    return items


_trees: dict[tuple[str, str, tuple[tuple[str, int, int], ...]], Tree] = {}


def _tree(path: Path, profile: CidProfile) -> Tree:
    """``build_tree(path)`` under ``profile``, hashed once per process while no file below it
    changes: the freeze computes the CIDs for the config, then pins the same trees (multi-GB
    checkpoints)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    key = (str(path), profile.name, stamp)
    if key not in _trees:
        _trees[key] = build_tree(path, profile=profile)
    return _trees[key]


def _entry(key: str, path: Path, tree: Tree) -> dict[str, Any]:
    from generation.lora import adapter_fingerprint
    from generation.onnx_runtime import onnx_fingerprint
    from generation.reference_models import model_fingerprint

    entry: dict[str, Any] = {"cid": tree.root}
    if key.startswith("style_images"):
        entry["sha256"] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    elif key.startswith("adapters"):
        entry["fingerprint"] = adapter_fingerprint(path)
    elif key == "onnx":
        entry["fingerprint"] = onnx_fingerprint(path)
    elif key != "diffusion_configs":
        entry["fingerprint"] = model_fingerprint(path)
    if path.is_file():
        entry["name"] = path.name
    return entry


def weights_record(collection: Collection) -> dict[str, Any]:
    """The config's ``weights`` block (computing every CID; nothing is pinned)."""
    profile = collection.ipfs_profile()
    record: dict[str, Any] = {"scheme": tree_scheme(profile)}
    for key, path in _items(collection):
        entry = _entry(key, path, _tree(path, profile))
        if key.endswith("]"):
            record.setdefault(key.split("[")[0], []).append(entry)
        else:
            record[key] = entry
    return record


def pin_weights(collection: Collection, pinner: Pinner | None = None) -> list[str]:
    """Pin every item of the ``weights`` block on each IPFS target (``pinner``: that one
    alone), recorded in the pin ledger with its source folder; the root CIDs, in order. Each
    root a backend reports is checked against the CID computed here (``CidMismatch``)."""
    from generation.pin_ledger import pin_folder

    roots = []
    for key, path in _items(collection):
        tree = _tree(path, collection.ipfs_profile())
        name = f"{collection.slug} {key}"
        roots.append(pin_folder(tree, name=name, source=path, collection=collection, pinner=pinner))
        log.info("%s: %s pinned as %s (%d bytes)", collection.slug, key, tree.root, tree.size)
    return roots
