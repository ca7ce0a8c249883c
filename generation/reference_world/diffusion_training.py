"""Train a small text-conditioned latent diffusion model on the reference world.

Three stages, each measured with the world's pixel oracle (never with the CLIP gate):

1. **VAE** (``AutoencoderKL``, three levels of 8/16/32 channels, 4 latent channels): an
   autoencoder on world images, L1 reconstruction loss plus a small KL term that keeps the
   latents' scale in bounds. The decoder learns from a latent sampled from the posterior, as
   Stable Diffusion's VAE does (``vae_decode="sample"``), or from the posterior mean
   (``"mode"``); docs/reference-world-diffusion.md compares the two. Its
   reconstructions of held-out images are read by the oracle: the VAE caps what any sampler
   built on it can draw.
2. **Text encoder and UNet**, trained together from scratch: a CLIP text tower
   (``CLIPTextModel``, width 64, 2 layers, CLIP's vocabulary and tokenizer) and a
   ``UNet2DConditionModel`` (32/64/64 channels, cross-attention at 8×8 and 4×4) predicting the
   noise added to the VAE's latents (Stable Diffusion 1.x's noise schedule), with one caption
   in ten replaced by the empty prompt so classifier-free guidance works.
3. **Sampling** through ``StableDiffusionPipeline`` loaded from the saved folder by the
   project's own :class:`generation.rendering.Renderer`, from held-out captions, with the
   oracle scoring each sample against the traits in its caption.

The latent is 16×16 (VAE scale factor 4) rather than 32×32: the UNet does four times less work
per step at 16×16, so it gets four times the steps in the same CPU minutes, and a flat shape
(circumradius 8 to 18 pixels, so 2 to 4.5 latent pixels) is still several latent pixels across;
the VAE decoder, not the latent grid, draws its edges.

Deterministic on the CPU: one torch thread, each component's initial weights from its own
``torch.manual_seed``, batches, noise, timesteps and caption dropout from seeded
``torch.Generator`` objects, images from the world's own seeds. The same seed and library
versions give byte-identical weights files.

Saved with ``StableDiffusionPipeline.save_pretrained`` in the layout of
:mod:`generation.reference_models` (``vae/``, ``unet/``, ``text_encoder/``, ``tokenizer/``
with vocab.json and merges.txt, ``scheduler/`` DDIM), plus ``world_training.json``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from generation.reference_models import (
    CONTEXT_LENGTH,
    VOCAB_SIZE,
    _clip_tokenizer,
    _copy_vocab_files,
    _make_readable,
    model_fingerprint,
    quiet_progress_bars,
    save_pipeline,
)
from generation.reference_world.clip_training import (
    HELD_OUT_SEED,
    TRAIN_SEED_BASE,
    TRAINING_RECORD,
    zero_unused_rows,
)
from generation.reference_world.oracle import read_traits
from generation.reference_world.world import CATEGORIES, IMAGE_SIZE, dataset

LATENT_SIZE = 16
"""Side of the latent grid: ``IMAGE_SIZE`` over the VAE's scale factor 4."""
VAE_CFG: dict[str, Any] = {
    "block_out_channels": (8, 16, 32),
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": IMAGE_SIZE,
}
UNET_CFG: dict[str, Any] = {
    "block_out_channels": (32, 64, 64),
    "layers_per_block": 1,
    "sample_size": LATENT_SIZE,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 64,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
TEXT_CFG: dict[str, Any] = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": CONTEXT_LENGTH,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 64,
}
# Stable Diffusion 1.x's schedule, as the untrained reference pipeline has it.
SCHEDULER_CFG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
_SEED_OFFSETS = {"vae": 1, "text_encoder": 2, "unet": 3, "vae_batches": 4, "unet_batches": 5}


@dataclass(frozen=True)
class DiffusionTraining:
    """How to train: everything that decides the weights."""

    seed: int = 0
    images: int = 4000
    vae_steps: int = 2000
    vae_batch_size: int = 16
    vae_learning_rate: float = 5e-3
    kl_weight: float = 1e-6
    """Weight of the KL term (summed over the latent) against the per-pixel mean L1 loss."""
    foreground_weight: float = 3.0
    """Extra weight of the L1 loss on coloured pixels (the shape and the gold frame; the
    background is grey): a small shape is a few percent of the image, and unweighted L1 lets
    the decoder trade its colour for the background's shade."""
    vae_decode: str = "sample"
    """What the decoder learns from: a latent sampled from the posterior or its mean
    (``"mode"``)."""
    unet_steps: int = 5500
    unet_batch_size: int = 32
    unet_learning_rate: float = 1e-3
    snr_gamma: float = 5.0
    """Min-SNR-γ loss weighting (Hang et al., 2023): each timestep's noise-prediction loss is
    weighted by min(SNR, γ) / SNR, so the low-noise steps, which are easy, stop dominating."""
    warmup_steps: int = 100
    unconditional_share: float = 0.1
    """Share of training captions replaced by the empty prompt (classifier-free guidance)."""


def _seed(training: DiffusionTraining, part: str) -> int:
    return training.seed * 16 + _SEED_OFFSETS[part]


def _to_tensor(images: Iterable[Image.Image]) -> torch.Tensor:
    """Images as a (n, 3, H, W) float tensor in [-1, 1], the VAE's input range."""
    array = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


def _to_images(pixels: torch.Tensor) -> list[Image.Image]:
    array = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    return [Image.fromarray(a.numpy(), mode="RGB") for a in array]


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _batches(
    count: int, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """``steps`` batches of indices, epochs of a seeded permutation."""
    order = torch.randperm(count, generator=generator)
    cursor = 0
    for _ in range(steps):
        if cursor + batch_size > count:
            order, cursor = torch.randperm(count, generator=generator), 0
        yield order[cursor : cursor + batch_size]
        cursor += batch_size


def _progress(
    log: Callable[[str], None], name: str, step: int, steps: int, losses: list[float]
) -> None:
    if (step + 1) % 100 == 0 or step + 1 == steps:
        recent = losses[-100:]
        log(f"  {name} step {step + 1}/{steps}: loss {sum(recent) / len(recent):.4f}")


def train_vae(
    pixels: torch.Tensor, training: DiffusionTraining, log: Callable[[str], None]
) -> tuple[Any, float]:
    """Stage 1: the autoencoder. Returns it (eval mode) and its final loss."""
    if training.vae_decode not in {"sample", "mode"}:
        raise ValueError(f"vae_decode {training.vae_decode!r}: use 'sample' or 'mode'")
    from diffusers import AutoencoderKL

    torch.manual_seed(_seed(training, "vae"))
    vae = AutoencoderKL(**VAE_CFG)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=training.vae_learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, training.vae_steps, training.warmup_steps)
    )
    generator = torch.Generator().manual_seed(_seed(training, "vae_batches"))
    sampled = training.vae_decode == "sample"
    vae.train()
    losses: list[float] = []
    batches = _batches(len(pixels), training.vae_batch_size, training.vae_steps, generator)
    for step, batch in enumerate(batches):
        x = pixels[batch]
        posterior = vae.encode(x).latent_dist
        latent = posterior.sample(generator=generator) if sampled else posterior.mode()
        reconstruction = vae.decode(latent).sample
        weights = 1.0 + training.foreground_weight * _coloured(x)
        l1 = ((reconstruction - x).abs() * weights).sum() / (weights.sum() * x.shape[1])
        loss = l1 + training.kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        _progress(log, "VAE", step, training.vae_steps, losses)
    vae.eval()
    return vae, sum(losses[-100:]) / len(losses[-100:])


def _coloured(pixels: torch.Tensor) -> torch.Tensor:
    """1 where a pixel is coloured (its channels differ by more than 0.3 of the [-1, 1] range:
    the shape or the frame), 0 where it is grey (the background); shape (n, 1, H, W)."""
    spread = pixels.max(dim=1, keepdim=True).values - pixels.min(dim=1, keepdim=True).values
    return (spread > 0.3).to(pixels.dtype)


def _latents(vae: Any, pixels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The posterior means of ``pixels``, unscaled."""
    with torch.no_grad():
        return torch.cat(
            [
                vae.encode(pixels[i : i + batch_size]).latent_dist.mean
                for i in range(0, len(pixels), batch_size)
            ]
        )


def denoising_loss(
    unet: Any,
    scheduler: Any,
    x0: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    context: torch.Tensor,
    snr_weights: torch.Tensor,
) -> torch.Tensor:
    """The noise-prediction loss of a batch of scaled latents ``x0``: each item's mean squared
    error weighted by its timestep's min-SNR-γ weight (``snr_weights``), averaged."""
    prediction = unet(scheduler.add_noise(x0, noise, timesteps), timesteps, context).sample
    per_item = F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
    return (per_item * snr_weights[timesteps]).mean()


def optimizer_step(
    loss: torch.Tensor, parameters: list[torch.nn.Parameter], optimizer: Any, schedule: Any
) -> float:
    """One step on ``loss`` (gradients clipped to norm 1); returns the loss as a float."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    schedule.step()
    return float(loss.detach())


def train_unet(
    latents: torch.Tensor,
    tokens: torch.Tensor,
    empty: torch.Tensor,
    tokenizer: Any,
    training: DiffusionTraining,
    log: Callable[[str], None],
) -> tuple[Any, Any, Any, float]:
    """Stage 2: text encoder and UNet on scaled latents and each image's caption tokens.

    Returns (text encoder, UNet, scheduler, final loss)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(_seed(training, "text_encoder"))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            **TEXT_CFG,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    torch.manual_seed(_seed(training, "unet"))
    unet = UNet2DConditionModel(**UNET_CFG)
    scheduler = DDIMScheduler(**SCHEDULER_CFG)
    parameters = [*text_encoder.parameters(), *unet.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=training.unet_learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, training.unet_steps, training.warmup_steps)
    )
    generator = torch.Generator().manual_seed(_seed(training, "unet_batches"))
    steps = scheduler.config.num_train_timesteps
    alphas = scheduler.alphas_cumprod
    snr = alphas / (1.0 - alphas)
    snr_weights = torch.clamp(snr, max=training.snr_gamma) / snr
    text_encoder.train()
    unet.train()
    losses: list[float] = []
    batches = _batches(len(latents), training.unet_batch_size, training.unet_steps, generator)
    for step, batch in enumerate(batches):
        x0 = latents[batch]
        noise = torch.randn(x0.shape, generator=generator)
        timesteps = torch.randint(0, steps, (len(batch),), generator=generator)
        dropped = torch.rand(len(batch), generator=generator) < training.unconditional_share
        ids = torch.where(dropped[:, None], empty[None, :], tokens[batch])
        # The pipeline's own call: the last hidden state, no attention mask.
        context = text_encoder(ids)[0]
        loss = denoising_loss(unet, scheduler, x0, noise, timesteps, context, snr_weights)
        losses.append(optimizer_step(loss, parameters, optimizer, schedule))
        _progress(log, "UNet", step, training.unet_steps, losses)
    text_encoder.eval()
    unet.eval()
    return text_encoder, unet, scheduler, sum(losses[-100:]) / len(losses[-100:])


def _zero_unused_tokens(text_encoder: Any, tokens: torch.Tensor) -> int:
    """Zero the token-table rows of every token no caption (nor the empty prompt) uses, and
    return how many. Those rows never received a gradient, only weight decay, so they carry
    nothing; zeros make the weights file compress to a fraction of its size in git. A prompt
    with words outside the world's captions reads them as zero vectors."""
    return zero_unused_rows(text_encoder.get_input_embeddings().weight, tokens)


def oracle_accuracy(
    images: Iterable[Image.Image], traits: Iterable[dict[str, str]]
) -> dict[str, float]:
    """Category → share of images the oracle reads as the given traits (unknown is wrong),
    plus ``all``: the share right in every category."""
    right = dict.fromkeys([*CATEGORIES, "all"], 0)
    count = 0
    for image, expected in zip(images, traits, strict=True):
        correct = read_traits(image).correct(expected)
        for name, ok in correct.items():
            right[name] += ok
        right["all"] += all(correct.values())
        count += 1
    return {name: value / max(count, 1) for name, value in right.items()}


def vae_reconstruction_accuracy(vae: Any, count: int) -> dict[str, float]:
    """Stage 1's measure: the oracle on the VAE's reconstructions (posterior means) of
    ``count`` held-out world images."""
    items = list(dataset(count, HELD_OUT_SEED))
    latents = _latents(vae, _to_tensor(item.image for item in items))
    with torch.no_grad():
        decoded = torch.cat([vae.decode(latents[i : i + 64]).sample for i in range(0, count, 64)])
    return oracle_accuracy(_to_images(decoded), (item.traits for item in items))


def train_diffusion(
    dest: Path,
    training: DiffusionTraining = DiffusionTraining(),
    *,
    vae_check: int = 192,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the pipeline and save it to ``dest``; returns the training record (also written
    to ``dest/world_training.json``): settings, losses, stage times, the VAE's reconstruction
    accuracy on ``vae_check`` held-out images (0: skip), sizes and the weights' fingerprint."""
    import diffusers
    import transformers

    dest = Path(dest)
    quiet_progress_bars()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    seconds: dict[str, float] = {}
    try:
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as scratch, torch.device("cpu"):
            tokenizer = _clip_tokenizer(Path(scratch) / "bpe")
            items = list(dataset(training.images, TRAIN_SEED_BASE + training.seed))
            pixels = _to_tensor(item.image for item in items)
            captions = sorted({item.caption for item in items})
            encoded = tokenizer(
                [*captions, ""],
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            index = {text: i for i, text in enumerate(captions)}
            tokens = encoded[[index[item.caption] for item in items]]
            seconds["data"] = time.monotonic() - started
            log(f"diffusion: {len(items)} world images, {len(captions)} captions")

            mark = time.monotonic()
            vae, vae_loss = train_vae(pixels, training, log)
            seconds["vae"] = time.monotonic() - mark
            log(f"VAE trained in {seconds['vae']:.0f} s, loss {vae_loss:.4f}")
            vae_accuracy = None
            if vae_check:
                mark = time.monotonic()
                vae_accuracy = vae_reconstruction_accuracy(vae, vae_check)
                seconds["vae_check"] = time.monotonic() - mark
                log(f"VAE reconstructions, oracle accuracy: {_figures(vae_accuracy)}")

            raw = _latents(vae, pixels)
            # Stable Diffusion's convention: latents scaled to unit variance for the UNet.
            scaling = float(f"{1.0 / float(raw.std()):.5g}")
            vae.register_to_config(scaling_factor=scaling)
            mark = time.monotonic()
            text_encoder, unet, scheduler, unet_loss = train_unet(
                raw * scaling, tokens, encoded[-1], tokenizer, training, log
            )
            seconds["unet"] = time.monotonic() - mark
            log(f"text encoder and UNet trained in {seconds['unet']:.0f} s, loss {unet_loss:.4f}")
            unused = _zero_unused_tokens(text_encoder, encoded)
            log(f"  {unused} token embeddings no caption uses set to zero")

            save_pipeline(dest, vae, text_encoder, tokenizer, unet, scheduler)
            _copy_vocab_files(Path(scratch) / "bpe", dest / "tokenizer")
            _make_readable(dest)
        seconds["total"] = time.monotonic() - started
    finally:
        torch.set_num_threads(threads)
    parameters = {
        name: sum(p.numel() for p in model.parameters())
        for name, model in (("vae", vae), ("text_encoder", text_encoder), ("unet", unet))
    }
    record = {
        "training": asdict(training),
        "configs": {"vae": VAE_CFG, "unet": UNET_CFG, "text_encoder": TEXT_CFG},
        "latent_scaling_factor": scaling,
        "vae_loss": vae_loss,
        "unet_loss": unet_loss,
        "vae_reconstruction_accuracy": vae_accuracy,
        "parameters": parameters,
        "weights_bytes": sum(p.stat().st_size for p in dest.rglob("*.safetensors")),
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        "threads": 1,
        "fingerprint": model_fingerprint(dest),
        "versions": {
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
        },
    }
    (dest / TRAINING_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _figures(accuracy: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in accuracy.items())


def evaluate_samples(
    model_dir: Path,
    *,
    count: int = 64,
    steps: int = 20,
    guidance: float = 4.0,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Stage 3: render ``count`` held-out captions with the project's renderer from the saved
    folder (seed per image as a token's), and score each sample with the oracle against its
    caption's traits. Returns per-category accuracy and seconds per image."""
    from generation.reference_world.samples import render_captions
    from generation.rendering import Renderer

    renderer = Renderer(Path(model_dir), device="cpu")
    items = list(dataset(count, HELD_OUT_SEED + 1))
    started = time.monotonic()
    images = render_captions(
        renderer,
        [item.caption for item in items],
        lambda i: f"sample:{i}".encode(),
        steps=steps,
        guidance=guidance,
        batch_size=batch_size,
    )
    elapsed = time.monotonic() - started
    return {
        "samples": count,
        "steps": steps,
        "guidance": guidance,
        "accuracy": oracle_accuracy(images, (item.traits for item in items)),
        "seconds_per_image": elapsed / count,
        "images": images,
    }
