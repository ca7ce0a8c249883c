"""Micro-batching: renders of one model and one shape share a single pipeline call.

Dramatiq worker threads call :meth:`RenderBatcher.render` concurrently. Requests with the same
*shape* -- ``(steps, guidance, width, height, scheduler)`` -- that arrive within ``max_wait`` seconds of the
first one waiting are grouped, up to ``max_batch``, and rendered by ONE
``StableDiffusionPipeline`` call; each caller gets its own image back. Requests of different
shapes never share a batch (the scheduler's timesteps, the guidance scale and the latent size
are per call). A failure of the batched call is raised to every caller of that batch.

One daemon thread per batcher does all the pipeline calls, so calls never overlap on the
pipeline's shared state (the scheduler's timesteps, the pipeline's guidance attributes); batchers
built over the same :class:`~generation.rendering.Renderer` also serialize their calls with each
other. Callers block on a future; nothing busy-waits.

Reproducibility. Each image gets its own CPU ``torch.Generator`` seeded with
:func:`~generation.render_seed.torch_seed_for` ``(seed, attempt)`` and the pipeline is given the
list (``generator=[...]``, ``num_images_per_prompt=1``). diffusers then draws each image's initial
latents from its own generator (``randn_tensor`` with a generator list), exactly the tensor a lone
render draws, so a token's initial noise does not depend on who shared its batch; DDIM with
``eta=0`` draws no further noise. The prompt embeddings are the renderer's cached ones, stacked
along the batch dimension. What remains between a batched and a lone render is floating point:
the UNet, text-conditioning attention and VAE run as batched matmuls, whose kernels may block and
accumulate differently for a different batch size. diffusers documents that outputs are only
reproducible within a tolerance across batch sizes, hardware and versions ("Reproducible
pipelines"), not bit for bit. Measured on the reference models, CPU float32, 64x64, 2-4 steps,
torch 2.14.1 / diffusers 0.42.1, 2 cores: batched and lone images differ by at most 1 level in
a uint8 channel (most pixels are identical); ``tests/test_batching.py`` asserts a maximum absolute
difference of 2.

Throughput on the same CPU (2 cores, shared; 8 images, steps=4, 64x64, warm, 4 runs): lone
sequential renders 240-330 ms per image (median about 285), batches of 4 180-200 ms (about 185),
batches of 8 160-215 ms (about 190): about 1.5x, with no further gain past 4 on two cores.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from generation.model_pool import POOL
from generation.render_seed import torch_seed_for
from generation.rendering import Renderer, RenderParams, get_renderer

Shape = tuple[int, float, int, int, str]  # (steps, guidance, width, height, scheduler)


def shape_of(params: RenderParams) -> Shape:
    """The parameters that must be equal for two renders to share one pipeline call."""
    return (params.steps, params.guidance, params.width, params.height, params.scheduler)


@dataclass
class _Request:
    params: RenderParams
    seed: bytes
    attempt: int
    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor | None
    arrived: float
    future: Future[Image.Image] = field(default_factory=Future)

    @property
    def shape(self) -> Shape:
        return shape_of(self.params)


class RenderBatcher:
    """Group concurrent renders of one shape into one pipeline call on ``renderer``.

    ``render(params, seed, attempt)`` blocks until the caller's image is ready and returns it
    (or raises the batched call's exception). Counters: ``batches`` (pipeline calls), ``images``
    (images rendered) and ``batch_sizes`` (histogram: batch size -> number of batches).
    """

    def __init__(self, renderer: Renderer, *, max_batch: int = 4, max_wait: float = 0.05) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait < 0:
            raise ValueError(f"max_wait must not be negative, got {max_wait}")
        self.renderer = renderer
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.batches = 0
        self.images = 0
        self.batch_sizes: Counter[int] = Counter()
        self._pending: list[_Request] = []  # arrival order
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"render-batcher-{id(self):x}", daemon=True
        )
        self._thread.start()

    def render(self, params: RenderParams, seed: bytes, attempt: int) -> Image.Image:
        """Render one image, possibly batched with concurrent requests of the same shape."""
        torch_seed_for(seed, attempt)  # validate here, so a bad argument fails only its caller
        # Encoded (or fetched from the renderer's cache) on the caller's thread: a failure here
        # is the caller's alone, and encoding overlaps the batch that is rendering.
        embeds, negative = self.renderer.prompt_embeddings(
            params.prompt, params.negative_prompt, params.guidance
        )
        request = _Request(params, seed, attempt, embeds, negative, time.monotonic())
        with self._cond:
            closed = self._closed
            if not closed:
                self._pending.append(request)
                self._cond.notify()
        if closed:  # its renderer left the warm pool while this caller held the batcher
            return self.renderer.render_many(params, [((embeds, negative), seed, attempt)])[0]
        return request.future.result()

    def close(self) -> None:
        """Stop the dispatcher thread once the waiting requests are rendered, so the batcher,
        and the renderer it holds, can be freed; later calls render alone on the caller's
        thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def stats(self) -> dict[str, object]:
        """A consistent snapshot of the counters."""
        with self._cond:
            return {
                "batches": self.batches,
                "images": self.images,
                "batch_sizes": dict(sorted(self.batch_sizes.items())),
            }

    # -- the dispatcher thread --------------------------------------------------------------

    def _next_batch(self) -> list[_Request] | None:
        """Block until a batch is due; remove it from the queue and return it (None once the
        batcher is closed and nothing waits).

        The oldest waiting request decides the shape; its batch is due when ``max_batch``
        requests of that shape are waiting or ``max_wait`` has passed since it arrived.
        """
        with self._cond:
            while True:
                while not self._pending:
                    if self._closed:
                        return None
                    self._cond.wait()
                first = self._pending[0]
                shape = first.shape
                same = [r for r in self._pending if r.shape == shape]
                remaining = first.arrived + self.max_wait - time.monotonic()
                if len(same) >= self.max_batch or remaining <= 0:
                    batch = same[: self.max_batch]
                    taken = {id(r) for r in batch}
                    self._pending = [r for r in self._pending if id(r) not in taken]
                    return batch
                self._cond.wait(remaining)

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                images = self._render_batch(batch)
            except BaseException as exc:  # every caller of the batch sees the failure
                for request in batch:
                    request.future.set_exception(exc)
            else:
                for request, image in zip(batch, images, strict=True):
                    request.future.set_result(image)

    def _render_batch(self, batch: Sequence[_Request]) -> list[Image.Image]:
        images = self.renderer.render_many(
            batch[0].params,
            [((r.prompt_embeds, r.negative_embeds), r.seed, r.attempt) for r in batch],
        )
        with self._cond:
            self.batches += 1
            self.images += len(batch)
            self.batch_sizes[len(batch)] += 1
        return images


_batchers: dict[tuple[Path, str | None, Path | None, int, float], RenderBatcher] = {}
_batchers_lock = threading.Lock()


def get_batcher(
    model_dir: Path,
    device: str | None = None,
    *,
    config_dir: Path | None = None,
    max_batch: int = 4,
    max_wait: float = 0.05,
    renderer: Renderer | None = None,
) -> RenderBatcher:
    """This process's ``RenderBatcher`` over ``get_renderer(model_dir, device, config_dir)``
    (``renderer``: that renderer, when the caller has just fetched it, so the warm pool counts
    the request once).

    A batcher lives as long as its renderer stays in the warm pool (generation/model_pool.py):
    batchers over evicted renderers are closed and dropped here, so they do not keep the
    renderer's memory; a reloaded renderer gets a new batcher.
    """
    config = Path(config_dir).resolve() if config_dir is not None else None
    key = (Path(model_dir).resolve(), device, config, max_batch, max_wait)
    if renderer is None:
        renderer = get_renderer(key[0], device, config)
    with _batchers_lock:
        for stale_key, stale in list(_batchers.items()):
            if stale.renderer is not renderer and not POOL.holds(stale.renderer):
                del _batchers[stale_key]
                stale.close()
        batcher = _batchers.get(key)
        if batcher is None or batcher.renderer is not renderer:
            if batcher is not None:  # a thread that fetched the renderer before a reload
                batcher.close()
            batcher = _batchers[key] = RenderBatcher(
                renderer, max_batch=max_batch, max_wait=max_wait
            )
        return batcher
