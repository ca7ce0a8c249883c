"""LoRA adapters on a collection's diffusion model: check them, fingerprint them, apply them.

A collection may name adapters (safetensors files of low-rank weight updates for the UNet, in
diffusers' or kohya's key layout) with a scale each. They change the image as much as the base
weights do, so each adapter's fingerprint belongs in the provenance beside the base model's.

An adapter written by ``manage.py train_lora`` records the fingerprint of the model it was
trained on in its safetensors header (:data:`BASE_FINGERPRINT_KEY`); an adapter for another
model is refused before anything is loaded. An adapter without that key (one trained
elsewhere) is accepted, and its tensors must then fit the UNet when it is loaded.

Adapters are loaded by diffusers' own LoRA loader on the peft backend, then fused into the
UNet's weights (:func:`apply_adapters` says why), so every pipeline that shares the UNet (the
renderer's scheduler variants) renders with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from generation.errors import ModelReferenceError
from generation.reference_models import model_fingerprint

FIELD = "lora_adapters"
"""The collection field the errors of this module name."""
ADAPTER_SUFFIX = ".safetensors"
BASE_FINGERPRINT_KEY = "base_model_fingerprint"
"""Safetensors header metadata key: the fingerprint of the model the adapter was trained on."""
_LORA_KEY_MARKERS = ("lora_A", "lora_B", "lora_down", "lora_up", "lora.down", "lora.up")
_UNET_KEY_PREFIXES = ("unet.", "lora_unet_")


def adapter_fingerprint(path: Path) -> str:
    """``"sha256:<hex>"`` of the adapter file's bytes (what ``sha256sum`` prints)."""
    return model_fingerprint(Path(path))


def read_adapter_header(path: Path) -> tuple[list[str], dict[str, str]]:
    """The adapter's tensor names and header metadata, read without loading any tensor.

    Raises ``ModelReferenceError("lora_adapters", ...)`` when the file is missing, is not
    ``.safetensors`` or cannot be read as one.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelReferenceError(FIELD, f"no LoRA adapter file at {path}")
    if path.suffix != ADAPTER_SUFFIX:
        raise ModelReferenceError(
            FIELD,
            f"{path.name}: LoRA adapters must be {ADAPTER_SUFFIX} (pickled "
            f"{path.suffix or 'files'} can run code when loaded)",
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            return list(handle.keys()), dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelReferenceError(
            FIELD, f"{path.name} is not a readable safetensors file ({exc})"
        ) from exc


def check_adapter(path: Path, base_fingerprint: str | None) -> None:
    """Raise ``ModelReferenceError("lora_adapters", ...)`` unless ``path`` is a LoRA adapter
    for a UNet that may go on the model whose fingerprint is ``base_fingerprint``.

    Refused: a missing file, another format than safetensors, a safetensors file without LoRA
    weights for a UNet, and an adapter whose header names another base model. With
    ``base_fingerprint`` None, only the file is checked.
    """
    path = Path(path)
    keys, metadata = read_adapter_header(path)
    lora_keys = [key for key in keys if any(marker in key for marker in _LORA_KEY_MARKERS)]
    if not lora_keys:
        raise ModelReferenceError(
            FIELD, f"{path.name} holds no LoRA weights ({len(keys)} tensors, none lora_A/lora_B)"
        )
    if not any(key.startswith(_UNET_KEY_PREFIXES) for key in lora_keys):
        raise ModelReferenceError(
            FIELD,
            f"{path.name} holds LoRA weights for no UNet (keys start "
            f"{sorted({key.split('.')[0] for key in lora_keys})[:3]}); only UNet adapters are "
            "loaded",
        )
    trained_on = metadata.get(BASE_FINGERPRINT_KEY)
    if base_fingerprint is not None and trained_on is not None and trained_on != base_fingerprint:
        raise ModelReferenceError(
            FIELD,
            f"{path.name} was trained for the model {trained_on}, not for this collection's "
            f"model {base_fingerprint}",
        )


def adapter_name(index: int) -> str:
    """The peft adapter name of a collection's adapter ``index`` (its place in the list)."""
    return f"lora_{index}"


def apply_adapters(pipe: Any, adapters: Sequence[tuple[Path, float]]) -> None:
    """Load ``adapters`` (path, scale) into ``pipe``'s UNet and fuse them into its weights.

    Each adapter goes through diffusers' ``load_lora_weights`` (peft backend) under its own
    name (:func:`adapter_name`), the scales are set with ``set_adapters``, and then the
    adapters are fused (``fuse_lora``) and their LoRA layers dropped (``unload_lora_weights``)
    because:

    - a fused UNet costs what the base one costs per step; unfused, every step runs each
      adapter's low-rank product beside every adapted layer (docs/lora.md has the times);
    - the weights are changed in place, so every pipeline sharing this UNet (the renderer's
      scheduler variants, ``Renderer.pipeline_for``) renders with the adapters;
    - a scale of 0 adds exactly zero to each weight: the base model's image, byte for byte.

    A pipeline takes adapters once: load a fresh one to change them. Each file is checked
    first (:func:`check_adapter` without a base fingerprint: the caller checks that with the
    collection's model); an adapter whose tensors do not fit the UNet raises
    ``ModelReferenceError("lora_adapters", ...)`` naming the file, and leaves the pipeline as
    it was.
    """
    if not adapters:
        return
    names: list[str] = []
    for index, (path, scale) in enumerate(adapters):
        path = Path(path)
        check_adapter(path, None)
        if not isinstance(scale, int | float) or isinstance(scale, bool):
            raise ModelReferenceError(FIELD, f"{path.name}: scale {scale!r} is not a number")
        name = adapter_name(index)
        try:
            pipe.load_lora_weights(
                str(path.parent), weight_name=path.name, adapter_name=name, local_files_only=True
            )
        except (RuntimeError, ValueError, KeyError) as exc:
            _drop(pipe, [*names, name])
            raise ModelReferenceError(
                FIELD, f"{path.name} does not fit this model's UNet: {_first_line(exc)}"
            ) from exc
        if name not in pipe.get_list_adapters().get("unet", []):
            _drop(pipe, [*names, name])
            raise ModelReferenceError(
                FIELD, f"{path.name}: none of its LoRA weights name a layer of this model's UNet"
            )
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[float(scale) for _, scale in adapters])
    pipe.fuse_lora(components=["unet"], lora_scale=1.0, adapter_names=names)
    pipe.unload_lora_weights()


def _drop(pipe: Any, names: list[str]) -> None:
    loaded = set(pipe.get_list_adapters().get("unet", []))
    present = [name for name in names if name in loaded]
    if present:
        pipe.delete_adapters(present)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
