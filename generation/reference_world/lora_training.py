"""Train a LoRA adapter on the reference world's diffusion model: a style the model never drew.

The world's teacher (``models/reference-world/diffusion``) draws its shapes within 3 pixels of
the image centre. The adapter teaches it one of the world's :data:`~generation.reference_world.
world.STYLES` (``top-left``: the shape 6 pixels up and left) from world images drawn so,
with the same captions, so a collection that names the adapter gets every render in the style
and its traits unchanged; the world's pixel oracle still reads them (docs/lora.md).

The base model is frozen: the VAE encodes the styled images once (posterior means, scaled as
the pipeline scales them), the text encoder encodes each distinct caption once, and only the
LoRA matrices peft adds to the UNet learn, with the teacher's loss (noise prediction on its
noise schedule, min-SNR-γ weights, one caption in ten dropped). LoRA goes on the attention
projections (``to_q``, ``to_k``, ``to_v``, ``to_out.0``) and on the ResNet and outer
convolutions: where a shape sits is a matter of position, which the convolutions (their zero
padding at the edges) see at every level, and attention only at 8×8 and 4×4.

Deterministic on the CPU like the teacher's training: one torch thread, the LoRA's initial
weights from ``torch.manual_seed``, batches, noise, timesteps and caption dropout from seeded
``torch.Generator`` objects. Saved with ``StableDiffusionPipeline.save_lora_weights``, the base
model's fingerprint in the file's header (:data:`generation.lora.BASE_FINGERPRINT_KEY`), beside
``lora_training.json`` and a few world images in the style (``style/``), the references of the
style gate.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from generation.lora import BASE_FINGERPRINT_KEY, adapter_fingerprint
from generation.reference_models import (
    _make_readable,
    load_local_pipeline,
    model_fingerprint,
    quiet_progress_bars,
)
from generation.reference_world.clip_training import HELD_OUT_SEED, TRAIN_SEED_BASE
from generation.reference_world.collection import (
    STYLE_DIR,
    STYLE_IMAGE_COUNT,
    WEIGHT_NAME,
    style_image_name,
    style_image_seed,
    style_image_traits,
)
from generation.reference_world.diffusion_training import (
    _batches,
    _lr_factor,
    _progress,
    _to_tensor,
    denoising_loss,
    optimizer_step,
)
from generation.reference_world.oracle import placed
from generation.reference_world.world import (
    STYLES,
    dataset,
    draw,
)
from generation.torch_threads import one_torch_thread

TRAINING_RECORD = "lora_training.json"
_SEED_OFFSETS = {"lora": 1, "batches": 2}


@dataclass(frozen=True)
class LoraTraining:
    """How to train: everything that decides the adapter's weights."""

    style: str = "top-left"
    seed: int = 0
    images: int = 2000
    steps: int = 700
    batch_size: int = 32
    learning_rate: float = 3e-3
    rank: int = 4
    """The LoRA rank; alpha is the same, so a scale of 1 adds the learned update as it is."""
    target_modules: tuple[str, ...] = field(
        default=("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "conv_in", "conv_out")
    )
    snr_gamma: float = 5.0
    warmup_steps: int = 50
    unconditional_share: float = 0.1


def _seed(training: LoraTraining, part: str) -> int:
    return training.seed * 16 + _SEED_OFFSETS[part]


def _lora_config(unet: Any) -> dict[str, Any]:
    """The adapter's peft config as diffusers writes it into the header, its target modules
    sorted (a set, whose order changes from one process to the next)."""
    config: dict[str, Any] = unet.peft_config["default"].to_dict()
    config["target_modules"] = sorted(config["target_modules"])
    return config


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def write_safetensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]
) -> None:
    """Write ``tensors`` and ``metadata`` in the safetensors format with everything in sorted
    order, so the same weights give the same bytes (and fingerprint) in every process:
    ``safetensors.torch.save_file`` writes the metadata in a hash map's order, which changes
    from run to run."""
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_style_references(dest: Path, style: str) -> list[Path]:
    """Draw the style gate's reference images of ``style`` into ``dest`` (the world
    collection's style images, same traits and seeds, in the style) and return their paths."""
    from generation.rendering import png_bytes

    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(STYLE_IMAGE_COUNT):
        path = dest / style_image_name(index)
        image = draw(style_image_traits(index), style_image_seed(index), style=style)
        path.write_bytes(png_bytes(image))
        paths.append(path)
    return paths


def _encode_captions(pipe: Any, captions: list[str]) -> torch.Tensor:
    """The frozen text encoder's output for each caption: the pipeline's own call (last hidden
    state of the padded tokens, no attention mask)."""
    ids = pipe.tokenizer(
        captions,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        return torch.cat([pipe.text_encoder(ids[i : i + 64])[0] for i in range(0, len(ids), 64)])


def train_lora(
    base_dir: Path,
    dest: Path,
    training: LoraTraining = LoraTraining(),
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the adapter on the model in ``base_dir`` and save it into ``dest``
    (:data:`WEIGHT_NAME`, :data:`TRAINING_RECORD`, ``style/``); returns the record."""
    import diffusers
    import peft
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    if training.style not in STYLES:
        raise ValueError(f"style {training.style!r} is not one of {sorted(STYLES)}")
    base_dir, dest = Path(base_dir), Path(dest)
    base_fingerprint = model_fingerprint(base_dir)
    quiet_progress_bars()
    seconds: dict[str, float] = {}
    with one_torch_thread(), torch.device("cpu"):
        started = time.monotonic()
        pipe = load_local_pipeline(base_dir)
        items = list(
            dataset(training.images, TRAIN_SEED_BASE + training.seed, style=training.style)
        )
        captions = sorted({item.caption for item in items})
        contexts = _encode_captions(pipe, [*captions, ""])
        index = {text: i for i, text in enumerate(captions)}
        caption_ids = torch.tensor([index[item.caption] for item in items])
        pixels = _to_tensor(item.image for item in items)
        with torch.no_grad():
            latents = torch.cat(
                [
                    pipe.vae.encode(pixels[i : i + 64]).latent_dist.mean
                    for i in range(0, len(pixels), 64)
                ]
            ) * float(pipe.vae.config.scaling_factor)
        seconds["data"] = time.monotonic() - started
        log(f"LoRA {training.style}: {len(items)} styled world images, {len(captions)} captions")

        unet, scheduler = pipe.unet, pipe.scheduler
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.requires_grad_(False)
        torch.manual_seed(_seed(training, "lora"))
        unet.add_adapter(
            LoraConfig(
                r=training.rank,
                lora_alpha=training.rank,
                init_lora_weights="gaussian",
                target_modules=list(training.target_modules),
            )
        )
        parameters = [p for p in unet.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=training.learning_rate, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: _lr_factor(s, training.steps, training.warmup_steps)
        )
        generator = torch.Generator().manual_seed(_seed(training, "batches"))
        alphas = scheduler.alphas_cumprod
        snr = alphas / (1.0 - alphas)
        snr_weights = torch.clamp(snr, max=training.snr_gamma) / snr
        timesteps_total = scheduler.config.num_train_timesteps
        empty = len(captions)
        unet.train()
        losses: list[float] = []
        mark = time.monotonic()
        batches = _batches(len(latents), training.batch_size, training.steps, generator)
        for step, batch in enumerate(batches):
            x0 = latents[batch]
            noise = torch.randn(x0.shape, generator=generator)
            timesteps = torch.randint(0, timesteps_total, (len(batch),), generator=generator)
            dropped = torch.rand(len(batch), generator=generator) < training.unconditional_share
            context = contexts[torch.where(dropped, empty, caption_ids[batch])]
            loss = denoising_loss(unet, scheduler, x0, noise, timesteps, context, snr_weights)
            losses.append(optimizer_step(loss, parameters, optimizer, schedule))
            _progress(log, "LoRA", step, training.steps, losses)
        unet.eval()
        seconds["train"] = time.monotonic() - mark

        dest.mkdir(parents=True, exist_ok=True)
        # peft's key names, under diffusers' "unet." prefix, with the LoRA config in the
        # header: the loader then takes rank, alpha and targets from the file, not a guess.
        StableDiffusionPipeline.save_lora_weights(
            dest,
            unet_lora_layers=get_peft_model_state_dict(unet),
            weight_name=WEIGHT_NAME,
            safe_serialization=True,
            unet_lora_adapter_metadata=_lora_config(unet),
        )
        # save_lora_weights writes its own header metadata (the LoRA config); the base model's
        # fingerprint goes beside it, tensors unchanged.
        weights = dest / WEIGHT_NAME
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        metadata.update({BASE_FINGERPRINT_KEY: base_fingerprint, "style": training.style})
        write_safetensors(load_file(str(weights)), weights, metadata)
        write_style_references(dest / STYLE_DIR, training.style)
        _make_readable(dest)
        seconds["total"] = time.monotonic() - started
    record = {
        "training": asdict(training),
        "base_model": str(base_dir),
        "base_fingerprint": base_fingerprint,
        "final_loss": sum(losses[-100:]) / len(losses[-100:]),
        "first_loss": sum(losses[:100]) / len(losses[:100]),
        "lora_parameters": sum(p.numel() for p in parameters),
        "unet_parameters": sum(p.numel() for p in unet.parameters())
        - sum(p.numel() for p in parameters),
        "weights_bytes": weights.stat().st_size,
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        "threads": 1,
        "fingerprint": adapter_fingerprint(weights),
        "versions": {
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "peft": peft.__version__,
        },
    }
    (dest / TRAINING_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def evaluate_adapter(
    base_dir: Path,
    adapter: Path,
    style: str,
    *,
    count: int = 32,
    steps: int = 20,
    guidance: float = 4.0,
    scale: float | None = 1.0,
) -> dict[str, Any]:
    """Render ``count`` held-out captions through the project's renderer with the adapter
    applied (none with ``scale`` None) and measure them with pixels alone: the oracle's
    accuracy per trait against each caption's traits and the share of renders in the style
    (:func:`placed`)."""
    from generation.lora import apply_adapters
    from generation.reference_world.diffusion_training import oracle_accuracy
    from generation.reference_world.samples import render_captions
    from generation.rendering import Renderer

    renderer = Renderer(Path(base_dir), device="cpu")
    if scale is not None:
        apply_adapters(renderer.pipe, [(Path(adapter), scale)])
    items = list(dataset(count, HELD_OUT_SEED + 1))
    with one_torch_thread():
        started = time.monotonic()
        images = render_captions(
            renderer,
            [item.caption for item in items],
            lambda i: f"sample:{i}".encode(),
            steps=steps,
            guidance=guidance,
        )
        elapsed = time.monotonic() - started
    return {
        "accuracy": oracle_accuracy(images, (item.traits for item in items)),
        "styled": sum(placed(image, style) for image in images) / len(images),
        "seconds_per_image": elapsed / len(images),
        "images": images,
    }
