"""The checks that need the model weights: their fingerprints, a re-render of the image from
the seed, and the CLIP scores recomputed.

torch, diffusers and open_clip (the ``render`` extra) are imported only here and only when
weights are given, so the public-data checks run from a base install.
"""

from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.reference_models import model_fingerprint
from generation.render_levers import Levers, levers_in
from verifier.checks import State
from verifier.errors import VerifyError
from verifier.report import Check, failed, passed, skipped

PIXEL_TOLERANCE = 1.0  # mean absolute difference per channel value (0-255) a re-render may show
CLIP_TOLERANCE = 1e-4  # how far a recomputed CLIP score may be from the recorded one
# what a re-render imports, by module name; pip's name for the set is the `render` extra
RENDER_MODULES = ("torch", "diffusers", "open_clip", "PIL", "numpy")


def require_render_extra() -> None:
    """Raise ``VerifyError`` naming the extra to install when weights are given to a base
    install (better than an ImportError from the middle of a check)."""
    missing = [name for name in RENDER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise VerifyError(
            f"re-rendering with --weights needs {', '.join(missing)}: "
            "pip install 'mint-on-demand[render]'"
        )


@dataclass
class Weights:
    """The weights to recompute with: the diffusion model (folder or single file) and CLIP."""

    diffusion: Path
    clip: Path
    config_dir: Path | None = None  # a single-file checkpoint's component configs
    # the latency levers' files (generation/render_levers.py): LoRA adapters, found by their
    # sha256 whatever their names, and the ONNX export's folder
    adapters: tuple[Path, ...] = ()
    onnx: Path | None = None
    # the collection's style reference images, in the frozen config's order (published ones,
    # fetched with --fetch-weights): the gate's style_images score is then recomputed too
    style_images: tuple[Path, ...] = ()

    @classmethod
    def from_folder(cls, folder: Path) -> Weights:
        """``diffusion/`` and ``clip/``, and where a collection pulls levers, ``adapters/``
        (LoRA safetensors files, any names) and ``onnx/`` (the export's folder)."""
        folder = Path(folder)
        diffusion, clip = folder / "diffusion", folder / "clip"
        missing = [str(p) for p in (diffusion, clip) if not p.exists()]
        if missing:
            raise VerifyError(
                f"weights folder {folder} lacks {', '.join(missing)} "
                "(expected diffusion/ and clip/ as the reference models have them)"
            )
        adapters = tuple(sorted((folder / "adapters").rglob("*.safetensors")))
        onnx = folder / "onnx"
        return cls(diffusion, clip, adapters=adapters, onnx=onnx if onnx.is_dir() else None)


class Models:
    """Loaded models, kept for every token of one run (``--all`` loads each model once)."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[Any, ...], Any] = {}

    def renderer(
        self, weights: Weights, device: str, dtype: str | None, levers: Levers | None = None
    ) -> Any:
        from generation.rendering import Renderer

        key = ("render", weights.diffusion, weights.config_dir, device, dtype, levers)
        if key not in self._loaded:
            self._loaded[key] = Renderer(
                weights.diffusion, device, config_dir=weights.config_dir, dtype=dtype, levers=levers
            )
        return self._loaded[key]

    def scorer(self, weights: Weights, device: str) -> Any:
        from generation.clip_gate import ClipScorer

        key = ("clip", weights.clip, device)
        if key not in self._loaded:
            self._loaded[key] = ClipScorer(weights.clip, device)
        return self._loaded[key]


def check_model_fingerprint(weights: Weights | None, state: State) -> Check:
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
    recorded_levers = levers_in(prov.get("model") or {})
    lever_wrong, levers = _lever_files(weights, recorded_levers)
    wrong += lever_wrong
    if wrong:
        return failed(name, "; ".join(wrong))
    state.weights_ok = True
    state.extra["levers"] = levers
    note = f"; levers: {levers.describe()}" if levers.any else ""
    return passed(name, f"diffusion {actual['diffusion']}, clip {actual['clip']}{note}")


def _lever_files(weights: Weights, recorded: dict[str, Any]) -> tuple[list[str], Levers]:
    """Find the files of the levers a token records among the weights given, by fingerprint:
    what is missing or different, and the levers to re-render with. (That the record follows
    the frozen config is the render_params check's.)"""
    wrong: list[str] = []
    adapters: list[tuple[Path, float]] = []
    if recorded.get("adapters"):
        from generation.lora import adapter_fingerprint

        given = {adapter_fingerprint(path): path for path in weights.adapters}
        for adapter in recorded["adapters"]:
            path = given.get(adapter["fingerprint"])
            if path is None:
                wrong.append(
                    f"LoRA adapter {adapter['fingerprint']}: not among the adapters given "
                    f"(--weights DIR/adapters: {', '.join(given) or 'none'})"
                )
            else:
                adapters.append((path, float(adapter["scale"])))
    onnx = None
    runtime = recorded.get("runtime")
    if runtime:
        if weights.onnx is None:
            wrong.append(f"ONNX files {runtime['fingerprint']}: none given (--weights DIR/onnx)")
        else:
            from generation.onnx_runtime import onnx_fingerprint

            actual = onnx_fingerprint(weights.onnx)
            if actual != runtime["fingerprint"]:
                wrong.append(f"ONNX files: given {actual}, recorded {runtime['fingerprint']}")
            onnx = weights.onnx
    quantization = (recorded.get("quantization") or {}).get("name", "")
    return wrong, Levers(adapters=tuple(adapters), quantization=quantization, onnx_dir=onnx)


def _torch_device(recorded: str | None, device: str | None) -> str:
    import torch

    if device:
        return device
    if recorded and recorded.startswith("cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def check_rerender(
    weights: Weights | None,
    state: State,
    *,
    device: str | None = None,
    dtype: str | None = None,
    tolerance: float = PIXEL_TOLERANCE,
    models: Models | None = None,
) -> Check:
    name = "rerender"
    if weights is None:
        return skipped(name, "no weights given (--weights)")
    if not state.weights_ok:
        return skipped(name, "the weights do not match the recorded fingerprints")
    if state.image is None or state.metadata is None or state.seed is None:
        return skipped(name, "the published image, the metadata or the seed was not verified")
    # the render extra, imported only for a re-render (the base install has no torch)
    import numpy as np
    from PIL import Image

    from generation.rendering import RenderParams, png_bytes

    prov = state.metadata["provenance"]
    render, model = prov["render"], prov["model"]
    recorded_dtype = model.get("dtype") or None
    dtype = dtype or recorded_dtype
    where = _torch_device(model.get("device"), device)
    levers = state.extra.get("levers")
    renderer = (models or Models()).renderer(weights, where, dtype, levers)
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
    if levers is not None and levers.any:
        how += f", levers: {levers.describe()}"
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
    state: State,
    *,
    device: str | None = None,
    tolerance: float = CLIP_TOLERANCE,
    models: Models | None = None,
) -> Check:
    name = "clip_scores"
    if weights is None:
        return skipped(name, "no weights given (--weights)")
    if not state.weights_ok:
        return skipped(name, "the weights do not match the recorded fingerprints")
    if state.image is None or state.metadata is None or state.config is None:
        return skipped(name, "the published image, the metadata or the config was not verified")
    if state.traits is None:
        return skipped(name, "the traits were not verified")
    from PIL import Image

    from generation.clip_gate import TraitCheck, reference_embedding
    from generation.clip_gate import check_image as gate

    clip, config = state.metadata["provenance"]["clip"], state.config
    scorer = (models or Models()).scorer(weights, device or "cpu")
    checks = [
        TraitCheck(
            c["name"], state.traits[c["name"]], {o["name"]: o["prompt"] for o in c["options"]}
        )
        for c in config["rarity"].get("categories", [])
        if c.get("verify")
    ]
    style_reference = None
    if weights.style_images and config["clip"].get("style_images_threshold") is not None:
        style_reference = reference_embedding(scorer, list(weights.style_images))
    result = gate(
        scorer,
        Image.open(io.BytesIO(state.image)).convert("RGB"),
        config["clip"]["style_prompt"],
        config["clip"]["threshold"],
        traits=checks,
        trait_margin=config["trait_margin"],
        style_reference=style_reference,
        style_reference_threshold=config["clip"].get("style_images_threshold"),
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
