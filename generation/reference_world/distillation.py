"""Distil a few-step student from a diffusion model on the reference world: latent consistency
distillation (LCD; Luo et al., 2023, "Latent Consistency Models"), sampled with diffusers'
``LCMScheduler``.

Why consistency distillation and not progressive distillation (Salimans & Ho, 2022):
progressive distillation halves the step count per round (20 → 10 → 5 → 2 → 1: four training
rounds, each a full run) and its student works at one step count only; one LCD run gives a
student that samples at any of 1, 2, 4 or 8 steps with the same weights, and diffusers ships
its sampler (``LCMScheduler``), so the student is loaded and rendered by the worker's own
``StableDiffusionPipeline`` unchanged. LCD also folds classifier-free guidance into the
student: the teacher's guided prediction is what the student learns, so the student renders
with ``guidance_scale=1`` (one UNet pass per step, not two).

One training step, as diffusers' ``train_lcm_distill_sd_wds.py`` does it:

1. take a world image's latent ``x0`` and caption, pick one of the 50 skipping-step DDIM
   timesteps ``t_n`` (19, 39, …, 999) and noise ``x0`` to ``x_t``;
2. the **teacher** (frozen) predicts the noise with and without the caption; its guided
   prediction (scale ``guidance``) takes one DDIM step from ``t_n`` to ``t_n - 20``;
3. the **target** (an exponential moving average of the student, no gradient) maps that
   point to its consistency estimate of ``x0``;
4. the **student** maps ``x_t`` straight to its estimate, and learns to agree with the target
   (pseudo-Huber loss). Both estimates use LCM's boundary conditions
   (``c_skip``, ``c_out`` with σ_data = 0.5 and timestep scaling 10), as ``LCMScheduler``
   applies them when sampling.

The student has the teacher's architecture (no guidance embedding), starts from the teacher's
weights, and shares its VAE, text encoder and tokenizer: only the UNet is trained. It is saved
as a full diffusers folder (the teacher's files plus the student UNet, ``LCMScheduler``
config), a model of its own with its own fingerprint, and ``distillation.json`` names the
teacher it came from (its fingerprint), the method and the settings.

Deterministic on the CPU: one torch thread, seeded generators, world images from the world's
own seeds; the same settings and library versions give the same weights bytes.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from generation.reference_models import (
    _make_readable,
    load_local_pipeline,
    model_fingerprint,
    quiet_progress_bars,
)
from generation.reference_world.clip_training import TRAIN_SEED_BASE
from generation.reference_world.diffusion_training import (
    _batches,
    _latents,
    _lr_factor,
    _progress,
    _to_tensor,
    evaluate_samples,
)
from generation.reference_world.world import dataset
from generation.render_levers import DISTILLATION_RECORD
from generation.torch_threads import one_torch_thread

METHOD = "latent consistency distillation (LCMScheduler; Luo et al., 2023)"
SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0  # LCMScheduler's default, so training and sampling agree


@dataclass(frozen=True)
class Distillation:
    """Everything that decides the student's weights."""

    seed: int = 0
    images: int = 4000
    steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_steps: int = 100
    guidance: float = 4.0
    """The teacher's classifier-free guidance scale folded into the student (the collection's
    renders at 20 steps use 4)."""
    ddim_timesteps: int = 50
    """Skipping-step schedule: the teacher's solver jumps 1000 / 50 = 20 timesteps per step;
    ``LCMScheduler``'s ``original_inference_steps``."""
    ema_decay: float = 0.95
    huber_c: float = 0.001


def boundary_scalings(timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM's ``c_skip`` and ``c_out`` at ``timesteps`` (``LCMScheduler`` applies the same)."""
    scaled = timesteps.to(torch.float32) * TIMESTEP_SCALING
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
    return c_skip[:, None, None, None], c_out[:, None, None, None]


def _x0(noisy: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return (noisy - (1 - alpha).sqrt() * eps) / alpha.sqrt()


def _consistency(
    unet: Any, noisy: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, alphas: Any
) -> torch.Tensor:
    """A UNet's consistency estimate of x0 from ``noisy`` at ``timesteps``."""
    eps = unet(noisy, timesteps, context).sample
    alpha = alphas[timesteps][:, None, None, None]
    c_skip, c_out = boundary_scalings(timesteps)
    return c_skip * noisy + c_out * _x0(noisy, eps, alpha)


def distil(
    teacher_dir: Path,
    dest: Path,
    training: Distillation = Distillation(),
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Distil ``teacher_dir`` (a diffusers ``StableDiffusionPipeline`` folder) into a student
    saved at ``dest``; returns the record also written to ``dest/distillation.json``."""
    import diffusers
    from diffusers import LCMScheduler

    teacher_dir, dest = Path(teacher_dir), Path(dest)
    quiet_progress_bars()
    started = time.monotonic()
    with one_torch_thread(), torch.device("cpu"):
        pipe = load_local_pipeline(teacher_dir)
        teacher = pipe.unet.eval().requires_grad_(False)
        vae, text_encoder = pipe.vae.eval(), pipe.text_encoder.eval()
        items = list(dataset(training.images, TRAIN_SEED_BASE + 100 + training.seed))
        latents = _latents(vae, _to_tensor(item.image for item in items))
        latents = latents * vae.config.scaling_factor
        captions = sorted({item.caption for item in items})
        ids = pipe.tokenizer(
            [*captions, ""],
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        with torch.no_grad():
            contexts = text_encoder(ids)[0]
        index = {text: i for i, text in enumerate(captions)}
        caption_of = torch.tensor([index[item.caption] for item in items])
        empty = contexts[-1]
        log(f"distil: {len(items)} world images, {len(captions)} captions")

        torch.manual_seed(training.seed)
        student = copy.deepcopy(teacher).train().requires_grad_(True)
        target = copy.deepcopy(teacher).eval().requires_grad_(False)
        alphas = pipe.scheduler.alphas_cumprod.to(torch.float32)
        train_steps = pipe.scheduler.config.num_train_timesteps
        skip = train_steps // training.ddim_timesteps
        solver_steps = torch.arange(1, training.ddim_timesteps + 1) * skip - 1  # 19, 39 … 999
        optimizer = torch.optim.AdamW(student.parameters(), lr=training.learning_rate)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: _lr_factor(s, training.steps, training.warmup_steps)
        )
        generator = torch.Generator().manual_seed(training.seed * 16 + 7)
        losses: list[float] = []
        batches = _batches(len(latents), training.batch_size, training.steps, generator)
        for step, batch in enumerate(batches):
            x0 = latents[batch]
            context = contexts[caption_of[batch]]
            noise = torch.randn(x0.shape, generator=generator)
            which = torch.randint(0, training.ddim_timesteps, (len(batch),), generator=generator)
            start = solver_steps[which]
            prev = (start - skip).clamp(min=0)
            noisy = pipe.scheduler.add_noise(x0, noise, start)
            with torch.no_grad():
                both = teacher(
                    torch.cat([noisy, noisy]),
                    torch.cat([start, start]),
                    torch.cat([context, empty.expand_as(context)]),
                ).sample
                cond_eps, uncond_eps = both.chunk(2)
                alpha = alphas[start][:, None, None, None]
                cond_x0, uncond_x0 = _x0(noisy, cond_eps, alpha), _x0(noisy, uncond_eps, alpha)
                w = training.guidance - 1.0  # LCM's w: guided = cond + w (cond - uncond)
                guided_x0 = cond_x0 + w * (cond_x0 - uncond_x0)
                guided_eps = cond_eps + w * (cond_eps - uncond_eps)
                alpha_prev = torch.where(start - skip >= 0, alphas[prev], alphas[0])[
                    :, None, None, None
                ]
                x_prev = alpha_prev.sqrt() * guided_x0 + (1 - alpha_prev).sqrt() * guided_eps
                aim = _consistency(target, x_prev, prev, context, alphas)
            guess = _consistency(student, noisy, start, context, alphas)
            c = training.huber_c
            loss = (((guess - aim) ** 2 + c**2).sqrt() - c).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                for t_param, s_param in zip(target.parameters(), student.parameters(), strict=True):
                    t_param.mul_(training.ema_decay).add_(s_param, alpha=1 - training.ema_decay)
            losses.append(float(loss.detach()))
            _progress(log, "student", step, training.steps, losses)
        student.eval()
        seconds = time.monotonic() - started
        scheduler = LCMScheduler.from_config(
            pipe.scheduler.config,
            original_inference_steps=training.ddim_timesteps,
            timestep_scaling=TIMESTEP_SCALING,
        )
        if dest.exists():
            shutil.rmtree(dest)
        pipe.unet, pipe.scheduler = student, scheduler
        pipe.register_modules(unet=student, scheduler=scheduler)
        pipe.save_pretrained(dest, safe_serialization=True)
        for name in ("vocab.json", "merges.txt"):  # the renderer's tokenizer needs both
            source = teacher_dir / "tokenizer" / name
            if source.is_file() and not (dest / "tokenizer" / name).is_file():
                shutil.copyfile(source, dest / "tokenizer" / name)
        _make_readable(dest)
    record = {
        "method": METHOD,
        "teacher_fingerprint": model_fingerprint(teacher_dir),
        "fingerprint": model_fingerprint(dest),
        "training": asdict(training),
        "loss": sum(losses[-100:]) / len(losses[-100:]),
        "seconds": round(seconds, 1),
        "threads": 1,
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
    }
    (dest / DISTILLATION_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def evaluate_student(
    model_dir: Path, *, count: int = 64, steps: int = 4, guidance: float = 1.0
) -> dict[str, Any]:
    """The oracle's trait accuracy on ``count`` held-out captions rendered by the model at
    ``model_dir`` with its own scheduler (LCMScheduler for a student): the diffusion
    training's own sampling stage, at the student's guidance."""
    result = evaluate_samples(model_dir, count=count, steps=steps, guidance=guidance)
    return {key: result[key] for key in ("steps", "guidance", "accuracy")}
