"""The latency levers a collection may pull on its diffusion model, and how each is recorded.

Four levers from the founding article, each a per-collection setting that shapes the pixels,
so each is validated, frozen with the config, recorded in every token's provenance and
re-applied by ``mintverify``:

- **LoRA adapters** (``lora_adapters``): safetensors files loaded through diffusers' LoRA
  loading (peft), each with its scale; fingerprinted by sha256 (generation/lora.py).
- **A distilled student**: not a setting of its own. The student (``manage.py distill``) is a
  diffusers folder, named as the collection's ``model_dir`` like any model, so its own
  fingerprint is the model's; its ``distillation.json`` names the teacher, recorded as
  ``distilled_from``.
- **int8 weights** (``quantization = "int8"``): torchao's int8 weight-only quantization of the
  UNet's and text encoder's linear layers, on the CPU (see :data:`INT8_SCHEME`).
- **ONNX Runtime** (``onnx_dir``): the UNet, VAE decoder and text encoder exported to ONNX and
  run by onnxruntime (generation/onnx_runtime.py); the files are fingerprinted like weights.

:func:`lever_record` gives the keys each lever adds to the ``model`` block, the same in the
frozen config and in a token's provenance, and only for the levers in use: a collection that
uses none keeps the config (and digest) it had before levers existed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.errors import ModelReferenceError

DISTILLATION_RECORD = "distillation.json"
#: the keys :func:`lever_record` may add to a ``model`` block
LEVER_KEYS = ("distilled_from", "adapters", "quantization", "runtime")
#: the collection fields that pull levers (a distilled student is a model_dir)
LEVER_FIELDS = ("lora_adapters", "quantization", "onnx_dir")
QUANTIZATIONS = ("", "int8")
INT8_SCHEME = (
    "torchao quantize_(Int8WeightOnlyConfig()) on the UNet and the text encoder: every "
    "nn.Linear weight int8 per output channel, activations float32; convolutions, the VAE "
    "and the attention softmax stay float32"
)


@dataclass(frozen=True)
class Levers:
    """The levers one renderer is built with (hashable: part of the warm pool's key)."""

    adapters: tuple[tuple[Path, float], ...] = ()
    quantization: str = ""
    onnx_dir: Path | None = None

    @property
    def any(self) -> bool:
        return bool(self.adapters or self.quantization or self.onnx_dir)

    def describe(self) -> str:
        parts = [f"LoRA {p.name}×{s:g}" for p, s in self.adapters]
        if self.quantization:
            parts.append(self.quantization)
        if self.onnx_dir is not None:
            parts.append("onnxruntime")
        return ", ".join(parts) or "none"


def check_levers(levers: Levers, model_fingerprint: str, device: str | None = None) -> None:
    """Raise ``ModelReferenceError`` naming the setting that cannot be honoured: an adapter or
    ONNX folder that is missing, damaged or made for another model, an unknown quantization,
    int8 on a device it does not run on, or two levers that do not combine."""
    if levers.quantization not in QUANTIZATIONS:
        raise ModelReferenceError(
            "quantization",
            f"{levers.quantization!r} is not a quantization: use one of "
            f"{', '.join(repr(q) for q in QUANTIZATIONS)}",
        )
    if levers.quantization and device is not None and not device.startswith("cpu"):
        raise ModelReferenceError(
            "quantization",
            f"int8 weights run on the CPU only (torchao's int8 weight-only CPU kernels); this "
            f"worker renders on {device}: use float16 or bfloat16 there (RENDER_DTYPE), or "
            "render the collection on CPU workers",
        )
    if levers.onnx_dir is not None and levers.quantization:
        raise ModelReferenceError(
            "quantization",
            "int8 applies to the torch modules; with onnx_dir set, onnxruntime runs the "
            "exported float32 graphs instead: choose one",
        )
    if levers.onnx_dir is not None and levers.adapters:
        raise ModelReferenceError(
            "onnx_dir",
            "LoRA adapters are loaded into the torch UNet; the ONNX files are the base "
            "model's export and would render without them: choose one",
        )
    if levers.adapters:
        from generation.lora import check_adapter

        for path, scale in levers.adapters:
            check_adapter(path, model_fingerprint)
            if not -4.0 <= scale <= 4.0:
                raise ModelReferenceError(
                    "lora_adapters", f"{path.name}: scale {scale} is outside -4..4"
                )
    if levers.onnx_dir is not None:
        from generation.onnx_runtime import check_onnx_folder

        check_onnx_folder(levers.onnx_dir, model_fingerprint)


def lever_record(levers: Levers, model_dir: Path | None = None) -> dict[str, Any]:
    """The keys the levers add to the ``model`` block of the config and the provenance."""
    record: dict[str, Any] = {}
    if model_dir is not None:
        distilled = read_distillation(model_dir)
        if distilled is not None:
            record["distilled_from"] = {
                "fingerprint": distilled["teacher_fingerprint"],
                "method": distilled["method"],
            }
    if levers.adapters:
        from generation.lora import adapter_fingerprint

        record["adapters"] = [
            {"fingerprint": adapter_fingerprint(path), "scale": scale}
            for path, scale in levers.adapters
        ]
    if levers.quantization:
        record["quantization"] = {"name": levers.quantization, "scheme": INT8_SCHEME}
    if levers.onnx_dir is not None:
        from generation.onnx_runtime import onnx_fingerprint

        record["runtime"] = {
            "name": "onnxruntime",
            "fingerprint": onnx_fingerprint(levers.onnx_dir),
        }
    return record


def levers_in(model_block: dict[str, Any]) -> dict[str, Any]:
    """The lever keys of a config's or a provenance's ``model`` block."""
    return {key: model_block[key] for key in LEVER_KEYS if key in model_block}


def read_distillation(model_dir: Path) -> dict[str, Any] | None:
    """The ``distillation.json`` record of a student folder (``manage.py distill``), or None
    for any other model."""
    path = Path(model_dir) / DISTILLATION_RECORD
    if not Path(model_dir).is_dir() or not path.is_file():
        return None
    return dict(json.loads(path.read_text()))


def apply_levers(pipe: Any, levers: Levers, device: str) -> None:
    """Pull the levers on a loaded ``StableDiffusionPipeline`` (adapters, then int8, or the
    ONNX swap); the caller has checked them (:func:`check_levers`)."""
    if levers.adapters:
        from generation.lora import apply_adapters

        apply_adapters(pipe, list(levers.adapters))
    if levers.quantization == "int8":
        quantize_int8(pipe)
    if levers.onnx_dir is not None:
        from generation.onnx_runtime import use_onnx

        use_onnx(pipe, levers.onnx_dir, device)


def quantize_int8(pipe: Any) -> None:
    """int8 weight-only quantization (torchao) of the UNet's and text encoder's linear layers,
    in place. torch's own ``torch.ao.quantization.quantize_dynamic`` is deprecated (its
    quantized tensor types are to be removed); torchao is where PyTorch maintains it."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(pipe.unet, Int8WeightOnlyConfig())
    quantize_(pipe.text_encoder, Int8WeightOnlyConfig())


def levers_from(
    adapters: Sequence[dict[str, Any]] | None,
    quantization: str,
    onnx_dir: Path | None,
    resolve: Any = Path,
) -> Levers:
    """A :class:`Levers` from a collection's settings (``resolve`` turns a stored path into
    the file's path, e.g. under MODEL_ROOTS)."""
    chosen = tuple((resolve(a["path"]), float(a.get("scale", 1.0))) for a in adapters or ())
    return Levers(adapters=chosen, quantization=quantization or "", onnx_dir=onnx_dir)
