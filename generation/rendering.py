"""Render a token's image from its on-chain seed with a diffusers pipeline.

Randomness comes only from a CPU ``torch.Generator`` seeded by :func:`torch_seed_for`, so a
re-render of the same (seed, attempt) on another machine gives the same image within a
tolerance. diffusers documents that bit-exact output across hardware and library versions is
not guaranteed; on one machine with one set of versions it is identical.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from generation.errors import ModelReferenceError
from generation.model_pool import POOL, module_bytes
from generation.reference_models import (
    load_local_pipeline,
    model_fingerprint,
    quiet_progress_bars,
)
from generation.render_levers import Levers, apply_levers, check_levers, lever_record
from generation.render_seed import torch_seed_for

#: A prompt's text-encoder output: (prompt embeddings, negative embeddings or None).
PromptEmbeddings = tuple[torch.Tensor, torch.Tensor | None]


@dataclass(frozen=True)
class RenderParams:
    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    width: int
    height: int
    scheduler: str = ""  # a diffusers scheduler class name; "" for the model's own


#: Weights files a single-file checkpoint may be. Pickled ``.ckpt``/``.pt`` files run
#: arbitrary code when loaded, so they are refused: convert them to safetensors first.
SINGLE_FILE_SUFFIXES = {".safetensors"}


#: Settings a chosen scheduler gets on top of the model's scheduler config: Stable Diffusion
#: ships PNDM as PLMS only (``skip_prk_steps``); with its Runge-Kutta warm-up steps, PNDM fails
#: below 4 inference steps.
SCHEDULER_OVERRIDES: dict[str, dict[str, Any]] = {"PNDMScheduler": {"skip_prk_steps": True}}


def check_model_reference(model_path: Path, config_dir: Path | None) -> None:
    """Raise ``ModelReferenceError`` unless ``model_path`` is a diffusers folder, or a
    ``.safetensors`` single-file checkpoint with ``config_dir`` (a diffusers folder holding the
    pipeline's component configs) beside it in the collection."""
    model_path = Path(model_path)
    if model_path.is_dir():
        if not (model_path / "model_index.json").is_file():
            raise ModelReferenceError(
                "model_dir",
                f"{model_path} is a folder without model_index.json: not a diffusers pipeline",
            )
        if config_dir is not None:
            raise ModelReferenceError(
                "model_config_dir",
                "only a single-file checkpoint takes a config folder; a diffusers folder "
                "carries its own configs",
            )
        return
    if not model_path.is_file():
        raise ModelReferenceError("model_dir", f"no model file or folder at {model_path}")
    if model_path.suffix not in SINGLE_FILE_SUFFIXES:
        raise ModelReferenceError(
            "model_dir",
            f"{model_path.name}: single-file checkpoints must be .safetensors (pickled "
            f"{model_path.suffix or 'files'} can run code when loaded)",
        )
    if config_dir is None:
        raise ModelReferenceError(
            "model_config_dir",
            f"the single-file checkpoint {model_path.name} needs a config folder: a local "
            "diffusers folder with model_index.json and the component configs",
        )
    if not (Path(config_dir) / "model_index.json").is_file():
        raise ModelReferenceError(
            "model_config_dir", f"{config_dir} has no model_index.json: not a diffusers folder"
        )


def scheduler_class_name(model_path: Path, config_dir: Path | None, requested: str) -> str:
    """The scheduler a render uses: ``requested``, or the class the model's config names."""
    if requested:
        return requested
    root = Path(config_dir) if config_dir is not None else Path(model_path)
    config = root / "scheduler" / "scheduler_config.json"
    try:
        return str(json.loads(config.read_text())["_class_name"])
    except (OSError, ValueError, KeyError) as exc:
        raise ModelReferenceError(
            "scheduler", f"the model names no scheduler ({config}: {exc}); choose one"
        ) from exc


class Renderer:
    """A loaded ``StableDiffusionPipeline``; load once per worker process and reuse."""

    def __init__(
        self,
        model_dir: Path,
        device: str | None = None,
        *,
        config_dir: Path | None = None,
        dtype: str | None = None,
        compile_unet: bool | None = None,
        levers: Levers | None = None,
    ) -> None:
        model_dir = Path(model_dir)
        check_model_reference(model_dir, config_dir)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model_dir = model_dir
        self.config_dir = Path(config_dir) if config_dir is not None else None
        self.device = device
        self.levers = levers if levers is not None else Levers()
        self.dtype = _dtype(device, dtype if dtype is not None else os.environ.get("RENDER_DTYPE"))
        if self.levers.onnx_dir is not None:
            self.dtype = torch.float32  # the ONNX exports are float32 graphs on every device
        # The fingerprints are computed before loading, from the same bytes that get loaded.
        self.fingerprint = model_fingerprint(model_dir)
        check_levers(self.levers, self.fingerprint, device)
        # what the levers add to the provenance's model block (generation/render_levers.py)
        self.lever_record = lever_record(self.levers, model_dir)
        quiet_progress_bars()
        if model_dir.is_file():
            from generation.single_file import load_single_file_pipeline

            # Original Stable Diffusion layout in one file: diffusers converts its keys and
            # takes the component configs from the local folder. The loader keeps diffusers
            # offline, turns the safety checker off and refuses a file lacking any of a
            # component's weights (diffusers would leave them at random values).
            self.format = "single-file"
            assert self.config_dir is not None  # check_model_reference demands it for a file
            pipe = load_single_file_pipeline(
                model_dir, self.config_dir, **{_dtype_keyword(): self.dtype}
            )
        else:
            self.format = "diffusers"
            pipe = load_local_pipeline(model_dir, **{_dtype_keyword(): self.dtype})
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(device)
        apply_levers(pipe, self.levers, device)
        # diffusers' default attention processor on torch 2 is scaled_dot_product_attention
        # (SDPA: flash / memory-efficient kernels on CUDA); say so in the log, don't assume.
        if self.levers.onnx_dir is not None:
            self.attention = "onnxruntime"
        else:
            processors = {type(p).__name__ for p in pipe.unet.attn_processors.values()}
            self.attention = ",".join(sorted(processors))
        if compile_unet is None:
            compile_unet = os.environ.get("RENDER_COMPILE", "").lower() in {"1", "true", "yes"}
        self.compiled = bool(
            compile_unet and device.startswith("cuda") and self.levers.onnx_dir is None
        )
        if self.compiled:
            # CUDA only: on CPU, inductor needs a C++ toolchain at run time and gains little.
            pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=False)
        self.scheduler_name = type(pipe.scheduler).__name__  # the model's own
        self._pipelines: dict[str, Any] = {"": pipe, self.scheduler_name: pipe}
        self._prompt_cache: OrderedDict[tuple[str, str, bool], PromptEmbeddings] = OrderedDict()
        self._prompt_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._pipe_lock = threading.Lock()

    def pipeline_for(self, scheduler: str) -> Any:
        """The pipeline with ``scheduler`` (a diffusers class name; "" for the model's own).

        Every variant shares this renderer's UNet, VAE and text encoder (no second copy of
        the weights); only the scheduler object, built from the model's scheduler config,
        is its own, since a scheduler keeps per-call state.
        """
        with self._prompt_lock:
            pipe = self._pipelines.get(scheduler)
            if pipe is not None:
                return pipe
            import diffusers

            cls = getattr(diffusers, scheduler, None)
            if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
                raise ModelReferenceError(
                    "scheduler", f"{scheduler!r} is not a diffusers scheduler"
                )
            base = self._pipelines[""]
            # a SchedulerMixin subclass; mypy does not follow diffusers (pyproject says why)
            scheduler_class: Any = cls
            built = scheduler_class.from_config(
                base.scheduler.config, **SCHEDULER_OVERRIDES.get(scheduler, {})
            )
            components = {**base.components, "scheduler": built}
            pipe = type(base)(**components, requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=True)
            self._pipelines[scheduler] = pipe
            return pipe

    def memory_bytes(self) -> int:
        """Bytes of the pipeline's weights and buffers (its UNet, VAE and text encoder)."""
        modules = [
            c for c in self._pipelines[""].components.values() if isinstance(c, torch.nn.Module)
        ]
        return module_bytes(modules)

    def scheduler_for(self, params: RenderParams) -> str:
        """The scheduler class name a render with ``params`` uses (for the provenance)."""
        return params.scheduler or self.scheduler_name

    renders = 0  # images this instance has rendered (the inference cache's tests count them)
    prompt_encodes = 0  # text-encoder passes; trait combinations repeat, so most are cached
    PROMPT_CACHE_SIZE = 512

    def prompt_embeddings(
        self, prompt: str, negative_prompt: str, guidance: float
    ) -> PromptEmbeddings:
        """The text encoder's output for a prompt, computed once per process and reused.

        The same call the pipeline makes internally (``encode_prompt``), so an image rendered
        from cached embeddings is the image the pipeline would render from the text.
        """
        guided = guidance > 1.0  # diffusers' do_classifier_free_guidance for these UNets
        key = (prompt, negative_prompt, guided)
        with self._prompt_lock:
            hit = self._prompt_cache.get(key)
            if hit is not None:
                self._prompt_cache.move_to_end(key)
                return hit
        # One encode at a time: the fast tokenizer switches padding on and off around each call,
        # so two threads encoding at once can get an unpadded (shorter) sequence.
        with self._encode_lock, torch.no_grad():
            embeds: PromptEmbeddings = self.pipe.encode_prompt(
                prompt, self.pipe.device, 1, guided, negative_prompt=negative_prompt or None
            )
        with self._prompt_lock:
            self.prompt_encodes += 1
            self._prompt_cache[key] = embeds
            while len(self._prompt_cache) > self.PROMPT_CACHE_SIZE:
                self._prompt_cache.popitem(last=False)
        return embeds

    def warm_up(self, params: RenderParams) -> float:
        """One throw-away render so the first token pays no first-call costs; its seconds."""
        started = time.perf_counter()
        self.render(params, b"warm-up", 0)
        self.renders -= 1
        return time.perf_counter() - started

    def render(self, params: RenderParams, seed: bytes, attempt: int) -> Image.Image:
        embeds = self.prompt_embeddings(params.prompt, params.negative_prompt, params.guidance)
        return self.render_many(params, [(embeds, seed, attempt)])[0]

    def render_many(
        self,
        params: RenderParams,
        requests: Sequence[tuple[PromptEmbeddings, bytes, int]],
    ) -> list[Image.Image]:
        """Render several images of one shape (``params``' steps, guidance and size) in one
        pipeline call: each request is ((prompt embeddings, negative embeddings), seed, attempt).

        One CPU generator per image: the noise is the part that must replay anywhere, and each
        image's is its own whatever shares the call. Calls on one pipeline never overlap (its
        scheduler keeps per-call state), whichever thread makes them.
        """
        pipe = self.pipeline_for(params.scheduler)
        device = pipe.device
        prompt_embeds = torch.cat([embeds for (embeds, _), _, _ in requests]).to(device)
        negatives = [negative for (_, negative), _, _ in requests if negative is not None]
        negative_embeds = None
        if len(negatives) == len(requests):
            negative_embeds = torch.cat(negatives).to(device)
        generators = [
            torch.Generator(device="cpu").manual_seed(torch_seed_for(seed, attempt))
            for _, seed, attempt in requests
        ]
        with self._pipe_lock:
            result = pipe(
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_embeds,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance,
                width=params.width,
                height=params.height,
                generator=generators,
                num_images_per_prompt=1,
                output_type="pil",
            )
            self.renders += len(requests)
        images = list(result.images)
        if len(images) != len(requests):
            raise RuntimeError(f"pipeline returned {len(images)} images for {len(requests)}")
        return images


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _dtype(device: str, name: str | None) -> torch.dtype:
    """``RENDER_DTYPE`` if set, else half precision on CUDA and float32 on CPU (CPU kernels
    want float32). Recorded in the provenance: the same seed renders visibly differently in
    float16 and float32."""
    if not name:
        return torch.float16 if device.startswith("cuda") else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"RENDER_DTYPE={name!r}: use one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def _dtype_keyword() -> str:
    # diffusers renamed from_pretrained's `torch_dtype` to `dtype` (the old name now warns);
    # the releases that accept `dtype` are the ones that ship the helper resolving the two.
    import diffusers.utils

    return "dtype" if hasattr(diffusers.utils, "_resolve_dtype") else "torch_dtype"


def get_renderer(
    model_dir: Path,
    device: str | None = None,
    config_dir: Path | None = None,
    levers: Levers | None = None,
) -> Renderer:
    """Return this process's ``Renderer`` for ``model_dir`` with ``levers``: from the warm pool
    (generation/model_pool.py), loaded on a miss."""
    config = Path(config_dir).resolve() if config_dir is not None else None
    levers = levers if levers is not None else Levers()
    key = (Path(model_dir).resolve(), device, config, levers)
    return POOL.get(
        "renderer",
        ("renderer", *key),
        lambda: Renderer(key[0], device, config_dir=config, levers=levers),
    )


def png_bytes(image: Image.Image) -> bytes:
    """Encode ``image`` as PNG with no metadata chunks (no time, no text, no ICC profile).

    The pixels are copied into a fresh image so nothing from ``image.info`` is written; the
    same pixels and the same zlib give the same bytes.
    """
    rgb = image.convert("RGB")
    clean = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    buf = io.BytesIO()
    clean.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
