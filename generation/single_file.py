"""Single-file Stable Diffusion checkpoints: export a diffusers folder to one, load one offline.

Many published SD 1.x models are one ``.safetensors`` file in the original (CompVis / LDM)
layout rather than a diffusers folder. A collection may name either; ``from_single_file``
converts such a file with ``diffusers.loaders.single_file_utils`` and takes the component
configs from a local diffusers folder. No model hub is reachable here, so the tests need a
single-file checkpoint of the reference pipeline: :func:`export_single_file` writes one, the
inverse of diffusers' converters ``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``
and ``convert_ldm_clip_checkpoint``. Every export is checked by running those converters on the
result: they must give back exactly the folder's tensors.

Layout written (SD 1.x)::

    model.diffusion_model.*            UNet2DConditionModel (input_blocks / middle_block /
                                       output_blocks numbering)
    first_stage_model.*                AutoencoderKL (encoder.down.N / decoder.up.N, mid.attn_1
                                       q/k/v/proj_out as 1x1 conv weights)
    cond_stage_model.transformer.*     CLIPTextModel (``text_model.`` keys, as transformers 4
                                       saved them)

Tensors keep the dtype they have in the folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from foundation.files import replacing
from generation.errors import (
    CheckpointNotFound,
    IncompleteCheckpoint,
    NotADiffusersFolder,
    UnreadableCheckpoint,
    UnsafeCheckpointFormat,
    UnsupportedModel,
)

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
COMPONENT_PREFIXES = {"unet": UNET_PREFIX, "vae": VAE_PREFIX, "text_encoder": CLIP_PREFIX}

# The component classes an SD 1.x pipeline folder holds and the weights file each saves.
_COMPONENTS = {
    "unet": ("UNet2DConditionModel", "diffusion_pytorch_model"),
    "vae": ("AutoencoderKL", "diffusion_pytorch_model"),
    "text_encoder": ("CLIPTextModel", "model"),
}

# The only header metadata written: a second key would be serialized in hash-map order by
# some safetensors releases, and the file's sha256 must not depend on that.
_METADATA = {"format": "pt"}

# diffusers ResnetBlock2D names -> LDM ResBlock names (inverse of
# update_unet_resnet_ldm_to_diffusers).
_UNET_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
# diffusers Attention (VAE mid block) -> LDM AttnBlock names (inverse of
# update_vae_attentions_ldm_to_diffusers); the projections are 1x1 convs in LDM.
_VAE_ATTENTION_NAMES = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
_VAE_ATTENTION_CONVS = {"q", "k", "v", "proj_out"}


def export_single_file(model_dir: Path, out_path: Path) -> Path:
    """Write the SD 1.x pipeline in diffusers folder ``model_dir`` as one ``.safetensors``
    file in the original layout at ``out_path`` and return ``out_path``.

    Deterministic: the same folder gives a byte-identical file (sorted keys, fixed metadata,
    no paths or times inside). The file is written beside ``out_path`` and moved into place,
    so a reader never sees half a file. Raises ``UnsupportedModel`` for a folder whose
    components the layout (or diffusers' converters) cannot express.
    """
    model_dir, out_path = Path(model_dir), Path(out_path)
    if out_path.suffix != ".safetensors":
        raise UnsafeCheckpointFormat(f"{out_path}: the output must be a .safetensors file")
    _require_pipeline_folder(model_dir)
    configs = {name: _read_json(model_dir / name / "config.json") for name in _COMPONENTS}
    weights = {
        name: _read_component_weights(model_dir / name, stem)
        for name, (_, stem) in _COMPONENTS.items()
    }
    checkpoint: dict[str, torch.Tensor] = {}
    converters: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
        "unet": _unet_to_ldm,
        "vae": _vae_to_ldm,
        "text_encoder": _clip_to_ldm,
    }
    for name, convert in converters.items():
        prefix = COMPONENT_PREFIXES[name]
        for key, tensor in convert(weights[name], configs[name]).items():
            checkpoint[prefix + key] = tensor.contiguous()
    _check_round_trip(checkpoint, weights, configs)
    _write_safetensors({key: checkpoint[key] for key in sorted(checkpoint)}, out_path)
    return out_path


def load_single_file_pipeline(checkpoint: Path, config_dir: Path, **kwargs: Any) -> Any:
    """A ``StableDiffusionPipeline`` from the single-file ``checkpoint``, with the component
    configs (scheduler, tokenizer, model configs) taken from the local diffusers folder
    ``config_dir``; nothing is fetched from a model hub.

    ``kwargs`` go to ``from_single_file`` (``dtype``/``torch_dtype``, ``safety_checker``, ...);
    ``config`` and ``local_files_only`` are this function's to set. Raises a
    ``SingleFileError`` naming the path at fault (see :func:`check_single_file`), and
    ``IncompleteCheckpoint`` when the file lacks some of a component's parameters.
    """
    from diffusers import StableDiffusionPipeline

    checkpoint, config_dir = Path(checkpoint), Path(config_dir)
    check_single_file(checkpoint, config_dir)
    fixed = {"config", "local_files_only", "original_config", "original_config_file"}
    if clash := sorted(fixed & kwargs.keys()):
        raise TypeError(f"load_single_file_pipeline sets {', '.join(clash)} itself")
    options: dict[str, Any] = {
        # The CLIP gate is this project's filter, and a safety checker is not in the file.
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
        # Real tensors for every parameter: with `accelerate` installed (peft, for LoRA,
        # depends on it) diffusers would otherwise build the model on the meta device, and a
        # parameter missing from the file would fail as a meta-tensor copy deep in torch
        # instead of reaching _require_complete's message.
        "low_cpu_mem_usage": False,
        **kwargs,
    }
    # `config` must be an existing folder: diffusers treats any other string as a hub repo id
    # and, with local_files_only=True and nothing cached, retries the download online.
    pipe = StableDiffusionPipeline.from_single_file(
        str(checkpoint), config=str(config_dir), local_files_only=True, **options
    )
    _require_complete(pipe, checkpoint)
    return pipe


def check_single_file(checkpoint: Path, config_dir: Path) -> None:
    """Raise a ``SingleFileError`` naming the path at fault unless ``checkpoint`` is a
    ``.safetensors`` file with keys for all three SD 1.x components and ``config_dir`` is a
    diffusers folder (``model_index.json``). Reads the file's header only."""
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES

    checkpoint, config_dir = Path(checkpoint), Path(config_dir)
    if checkpoint.suffix != ".safetensors":
        raise UnsafeCheckpointFormat(
            f"{checkpoint}: only .safetensors checkpoints are loaded; pickled "
            f"{checkpoint.suffix or 'files'} can run arbitrary code when loaded (convert it "
            "to safetensors in a sandbox first)"
        )
    if not checkpoint.is_file():
        raise CheckpointNotFound(f"no checkpoint file at {checkpoint}")
    if not (config_dir / "model_index.json").is_file():
        raise NotADiffusersFolder(
            f"{config_dir} has no model_index.json: the config folder must be a local "
            "diffusers pipeline folder with the component configs"
        )
    keys = _header_shapes(checkpoint).keys()
    missing = [
        name
        for name, prefix in COMPONENT_PREFIXES.items()
        if not any(key.startswith(prefix) for key in keys)
    ]
    # diffusers recognises the text encoder by this one key (CHECKPOINT_KEY_NAMES["clip"]).
    if CHECKPOINT_KEY_NAMES["clip"] not in keys and "text_encoder" not in missing:
        missing.append("text_encoder")
    if missing:
        raise IncompleteCheckpoint(
            f"{checkpoint} lacks the {', '.join(missing)} weights of an SD 1.x checkpoint "
            f"(keys under {', '.join(COMPONENT_PREFIXES[m] for m in missing)})"
        )


def _header_shapes(checkpoint: Path) -> dict[str, list[int]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(checkpoint, "pt") as f:
            # safe_open has keys() but is not iterable itself
            return {key: f.get_slice(key).get_shape() for key in f.keys()}  # noqa: SIM118
    except SafetensorError as exc:
        raise UnreadableCheckpoint(
            f"{checkpoint}: not a readable safetensors file ({exc})"
        ) from exc


def _require_complete(pipe: Any, checkpoint: Path) -> None:
    """from_single_file loads with ``strict=False``: a parameter missing from the file stays
    at its random initial value, silently, and renders stop being reproducible. Run diffusers'
    converters over the file's keys (as shape-only meta tensors) and require every parameter
    of every loaded component among them."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    stand_ins = {
        key: torch.empty(shape, device="meta") for key, shape in _header_shapes(checkpoint).items()
    }
    provided = {
        "unet": convert_ldm_unet_checkpoint(stand_ins, dict(pipe.unet.config)),
        "vae": convert_ldm_vae_checkpoint(stand_ins, dict(pipe.vae.config)),
        "text_encoder": convert_ldm_clip_checkpoint(stand_ins),
    }
    for name, keys in provided.items():
        have = {_without_text_model(key) for key in keys}
        missing = sorted(
            key for key in getattr(pipe, name).state_dict() if _without_text_model(key) not in have
        )
        if missing:
            raise IncompleteCheckpoint(
                f"{checkpoint}: {len(missing)} {name} parameter(s) missing from the file "
                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"
            )


def _without_text_model(key: str) -> str:
    # transformers 5.6+ keeps CLIPTextModel's parameters without the `text_model.` level.
    return key.removeprefix("text_model.")


# --- the inverse converters -------------------------------------------------------------


def _unet_to_ldm(weights: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict:
    """diffusers UNet2DConditionModel keys -> LDM UNetModel keys (no prefix)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    # Class and addition embeddings (upscaler, SDXL) are not part of an SD 1.x UNet.
    for field in ("class_embed_type", "addition_embed_type", "num_class_embeds"):
        if config.get(field) is not None:
            raise UnsupportedModel(f"UNet with {field}={config[field]!r} is not SD 1.x")
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        # convert_ldm_unet_checkpoint numbers blocks with one int for every block.
        raise UnsupportedModel(f"UNet layers_per_block {layers!r}: one int is needed")
    per_level = layers + 1  # LDM: the level's resnets, then its down/upsampler (or skip)
    top = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    up_with_attention = {
        int(m.group(1))
        for key in weights
        if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", key))
    }

    def rename(key: str) -> str | None:
        if key in top:
            return top[key]
        if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = 1 + block * per_level + layer
            if kind == "resnets":
                return f"input_blocks.{index}.0.{_unet_resnet(rest)}"
            return f"input_blocks.{index}.1.{rest}"
        if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key):
            return f"input_blocks.{1 + int(m[1]) * per_level + layers}.0.op.{m[2]}"
        # converter: middle_block.0 -> resnets.0, .1 -> attentions.0, .2 -> resnets.1
        if m := re.fullmatch(r"mid_block\.resnets\.([01])\.(.+)", key):
            return f"middle_block.{2 * int(m[1])}.{_unet_resnet(m[2])}"
        if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            return f"middle_block.1.{m[1]}"
        if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = block * per_level + layer
            if kind == "resnets":
                return f"output_blocks.{index}.0.{_unet_resnet(rest)}"
            return f"output_blocks.{index}.1.{rest}"
        if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key):
            block = int(m[1])
            # after the attention when the level has one, else right after the resnet
            slot = 2 if block in up_with_attention else 1
            return f"output_blocks.{block * per_level + layers}.{slot}.conv.{m[2]}"
        return None

    return _rename_all(weights, rename, "unet")


def _unet_resnet(rest: str) -> str:
    name, _, param = rest.partition(".")
    if name not in _UNET_RESNET_NAMES:
        raise UnsupportedModel(f"UNet resnet parameter {rest!r} has no LDM name")
    return f"{_UNET_RESNET_NAMES[name]}.{param}"


def _vae_to_ldm(weights: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict:
    """diffusers AutoencoderKL keys -> LDM AutoencoderKL keys (no prefix)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["vae"]
    levels = len(config["up_block_types"])
    if levels != len(config["down_block_types"]):
        raise UnsupportedModel("VAE with different encoder and decoder depths")

    def rename(key: str) -> str | None:
        if key in top:
            return top[key]
        if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            return f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}"
        if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key):
            return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        # LDM numbers the decoder's levels from the highest resolution, diffusers from the
        # lowest.
        if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{_vae_resnet(m[3])}"
        if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key):
            return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
        # the converter reads exactly two mid resnets (block_1, block_2) and one attention
        if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)", key):
            return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet(m[3])}"
        if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(\w+)", key):
            if m[2] not in _VAE_ATTENTION_NAMES:
                return None
            return f"{m[1]}.mid.attn_1.{_VAE_ATTENTION_NAMES[m[2]]}.{m[3]}"
        return None

    renamed = _rename_all(weights, rename, "vae")
    for key, tensor in renamed.items():
        # LDM's AttnBlock projects with 1x1 convs; diffusers' converter squeezes them to
        # linear weights, so put the two trailing unit dimensions back.
        parts = key.split(".")
        if (
            ".mid.attn_1." in key
            and parts[-2] in _VAE_ATTENTION_CONVS
            and parts[-1] == "weight"
            and tensor.ndim == 2
        ):
            renamed[key] = tensor[:, :, None, None]
    return renamed


def _vae_resnet(rest: str) -> str:
    name, _, param = rest.partition(".")
    if name not in {"norm1", "conv1", "norm2", "conv2", "conv_shortcut"}:
        raise UnsupportedModel(f"VAE resnet parameter {rest!r} has no LDM name")
    return ("nin_shortcut" if name == "conv_shortcut" else name) + "." + param


def _clip_to_ldm(weights: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict:
    """transformers CLIPTextModel keys -> the ``transformer.`` keys of LDM's FrozenCLIPEmbedder
    (no prefix). transformers 5.6+ saves the text model's keys without ``text_model.``; SD 1.x
    files (and diffusers' "clip" marker key) have it."""
    if config.get("model_type", "clip_text_model") != "clip_text_model":
        raise UnsupportedModel(f"text encoder model_type {config.get('model_type')!r}")
    return {
        (key if key.startswith("text_model.") else "text_model." + key): tensor
        for key, tensor in weights.items()
    }


def _rename_all(
    weights: Mapping[str, torch.Tensor], rename: Callable[[str], str | None], component: str
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in weights.items():
        new = rename(key)
        if new is None:
            unknown.append(key)
        elif new in out:
            raise UnsupportedModel(f"{component}: two parameters map to {new}")
        else:
            out[new] = tensor
    if unknown:
        shown = ", ".join(sorted(unknown)[:5])
        raise UnsupportedModel(
            f"{component}: {len(unknown)} parameter(s) have no SD 1.x single-file name "
            f"({shown}{', ...' if len(unknown) > 5 else ''})"
        )
    return out


# --- checks and I/O ---------------------------------------------------------------------


def _check_round_trip(
    checkpoint: Mapping[str, torch.Tensor],
    weights: Mapping[str, Mapping[str, torch.Tensor]],
    configs: Mapping[str, Mapping[str, Any]],
) -> None:
    """diffusers' own converters, run on the exported keys, must give back every tensor of
    the folder under its own name, and nothing else."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    def strip(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {_without_text_model(k): v for k, v in sd.items()}

    back = {
        "unet": convert_ldm_unet_checkpoint(dict(checkpoint), dict(configs["unet"])),
        "vae": convert_ldm_vae_checkpoint(dict(checkpoint), dict(configs["vae"])),
        "text_encoder": strip(convert_ldm_clip_checkpoint(dict(checkpoint))),
    }
    for name, original in weights.items():
        if name == "text_encoder":
            original = strip(original)
        got = back[name]
        if got.keys() != original.keys():
            lost = sorted(original.keys() - got.keys())[:5]
            extra = sorted(got.keys() - original.keys())[:5]
            raise UnsupportedModel(
                f"{name}: diffusers' converter does not read the export back "
                f"(lost {lost}, unexpected {extra})"
            )
        for key, tensor in original.items():
            other = got[key]
            if other.shape != tensor.shape or other.dtype != tensor.dtype:
                raise UnsupportedModel(
                    f"{name}.{key}: read back as {tuple(other.shape)} {other.dtype}, "
                    f"saved as {tuple(tensor.shape)} {tensor.dtype}"
                )
            if not torch.equal(other, tensor):
                raise UnsupportedModel(f"{name}.{key}: read back with other values")


def _require_pipeline_folder(model_dir: Path) -> None:
    index_path = model_dir / "model_index.json"
    if not index_path.is_file():
        raise NotADiffusersFolder(f"{model_dir} has no model_index.json: not a diffusers folder")
    index = _read_json(index_path)
    for name, (class_name, _) in _COMPONENTS.items():
        entry = index.get(name)
        if not isinstance(entry, list) or len(entry) != 2 or entry[1] != class_name:
            raise UnsupportedModel(
                f"{index_path}: {name} is {entry!r}; the SD 1.x single-file layout needs "
                f"a {class_name}"
            )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotADiffusersFolder(f"{path} is missing") from exc


def _read_component_weights(folder: Path, stem: str) -> dict[str, torch.Tensor]:
    """A component's tensors from ``<stem>.safetensors`` or its sharded form
    (``<stem>.safetensors.index.json``). Pickled ``.bin`` weights are refused."""
    from safetensors.torch import load_file

    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return load_file(single)
    if index.is_file():
        shards = sorted(set(_read_json(index)["weight_map"].values()))
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(load_file(folder / shard))
        return tensors
    if any(folder.glob(f"{stem}*.bin")):
        raise UnsafeCheckpointFormat(
            f"{folder}: only pickled .bin weights; re-save the pipeline with "
            "safe_serialization=True"
        )
    raise NotADiffusersFolder(f"no {stem}.safetensors in {folder}")


def _write_safetensors(tensors: dict[str, torch.Tensor], out_path: Path) -> None:
    from safetensors.torch import save_file

    with replacing(out_path) as tmp:
        save_file(tensors, str(tmp), metadata=dict(_METADATA))
