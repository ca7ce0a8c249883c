"""Micro-batching of renders: grouping by shape, per-image generators, failures, counters.

Reference models only, CPU, no database. Batched images are compared with the lone render of
the same request: they differ only by floating point (batched matmuls). Measured here: at most
1 level in a uint8 channel; asserted: at most ``TOLERANCE``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from generation.batching import RenderBatcher, get_batcher
from generation.rendering import Renderer, RenderParams, get_renderer

TOLERANCE = 2  # max abs difference per uint8 channel, batched vs lone (measured: 1)


def params(i: int, *, steps: int = 2, width: int = 64) -> RenderParams:
    return RenderParams(
        prompt=f"token {i}: a {['red', 'blue', 'green', 'gold'][i % 4]} fox, oil painting",
        negative_prompt="blurry, text",
        steps=steps,
        guidance=7.5,
        width=width,
        height=64,
    )


def seed(i: int) -> bytes:
    return bytes([i + 1]) * 32


@pytest.fixture(scope="module")
def renderer(reference_models: Path) -> Renderer:
    return get_renderer(reference_models / "diffusion", device="cpu")


def submit_together(
    batcher: RenderBatcher, requests: list[tuple[RenderParams, bytes, int]]
) -> list[Any]:
    """Call ``batcher.render`` from one thread per request, released at once by a barrier.

    Returns, per request, its image or the exception it raised.
    """
    results: list[Any] = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = batcher.render(*requests[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a caller never got its result"
    return results


def max_abs_diff(a: Image.Image, b: Image.Image) -> int:
    x, y = (
        np.asarray(a.convert("RGB"), dtype=np.int16),
        np.asarray(b.convert("RGB"), dtype=np.int16),
    )
    assert x.shape == y.shape
    return int(np.abs(x - y).max())


def test_four_concurrent_requests_share_one_call_and_match_lone_renders(
    renderer: Renderer,
) -> None:
    batcher = RenderBatcher(renderer, max_batch=4, max_wait=0.5)
    requests = [(params(i), seed(i), i % 2) for i in range(4)]
    images = submit_together(batcher, requests)

    assert batcher.batches == 1
    assert dict(batcher.batch_sizes) == {4: 1}
    assert batcher.images == 4
    lone = [renderer.render(*request) for request in requests]
    diffs = [max_abs_diff(got, want) for got, want in zip(images, lone, strict=True)]
    assert max(diffs) <= TOLERANCE, diffs
    # Each caller got its own image: the four differ from each other far beyond the tolerance.
    assert min(max_abs_diff(images[0], other) for other in images[1:]) > 10 * TOLERANCE


def test_a_token_image_does_not_depend_on_its_batch_mates(renderer: Renderer) -> None:
    batcher = RenderBatcher(renderer, max_batch=3, max_wait=0.5)
    target = (params(0), seed(0), 0)
    with_some = submit_together(batcher, [target, (params(1), seed(1), 0), (params(2), seed(2), 0)])
    with_others = submit_together(
        batcher, [(params(3), seed(3), 1), target, (params(1), seed(9), 0)]
    )
    assert max_abs_diff(with_some[0], with_others[1]) <= TOLERANCE


def test_different_shapes_never_share_a_batch(renderer: Renderer) -> None:
    batcher = RenderBatcher(renderer, max_batch=4, max_wait=0.3)
    requests = [(params(i, steps=2 if i % 2 else 3), seed(i), 0) for i in range(4)]
    images = submit_together(batcher, requests)

    assert batcher.batches == 2
    assert dict(batcher.batch_sizes) == {2: 2}
    for request, image in zip(requests, images, strict=True):
        assert max_abs_diff(image, renderer.render(*request)) <= TOLERANCE


def test_max_batch_caps_the_batch(renderer: Renderer) -> None:
    batcher = RenderBatcher(renderer, max_batch=2, max_wait=0.5)
    images = submit_together(batcher, [(params(i), seed(i), 0) for i in range(4)])

    assert all(isinstance(image, Image.Image) for image in images)
    assert batcher.batches == 2
    assert dict(batcher.batch_sizes) == {2: 2}
    assert batcher.images == 4


def test_a_failed_batch_reaches_every_caller(renderer: Renderer) -> None:
    batcher = RenderBatcher(renderer, max_batch=3, max_wait=0.5)
    # A width that is not a multiple of 8: diffusers' input check raises for the whole call.
    results = submit_together(batcher, [(params(i, width=60), seed(i), 0) for i in range(3)])

    assert all(isinstance(result, ValueError) for result in results), results
    assert "divisible by 8" in str(results[0])
    assert batcher.batches == 0
    # The dispatcher survives a failed batch.
    (image,) = submit_together(batcher, [(params(0), seed(0), 0)])
    assert isinstance(image, Image.Image)
    assert dict(batcher.batch_sizes) == {1: 1}


def test_a_lone_request_is_rendered_after_max_wait(renderer: Renderer) -> None:
    batcher = RenderBatcher(renderer, max_batch=4, max_wait=0.05)
    image = batcher.render(params(1), seed(1), 0)
    assert max_abs_diff(image, renderer.render(params(1), seed(1), 0)) <= TOLERANCE
    assert batcher.stats() == {"batches": 1, "images": 1, "batch_sizes": {1: 1}}


def test_get_batcher_is_cached_per_process(reference_models: Path, renderer: Renderer) -> None:
    def make() -> RenderBatcher:
        return get_batcher(reference_models / "diffusion", "cpu", max_batch=4, max_wait=0.05)

    first = make()
    assert make() is first
    assert first.renderer is renderer
    assert (
        get_batcher(reference_models / "diffusion", "cpu", max_batch=2, max_wait=0.05) is not first
    )


def test_it_encodes_prompts_safely_from_many_threads_at_once(reference_models) -> None:  # type: ignore[no-untyped-def]
    # Prompts of different lengths encoded concurrently all come back padded to the same length
    # (the fast tokenizer's padding is switched per call, so unguarded calls race).
    from concurrent.futures import ThreadPoolExecutor

    from generation.rendering import Renderer

    renderer = Renderer(reference_models / "diffusion", device="cpu")
    prompts = [f"token {i} " + "word " * (i % 20) for i in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        shapes = list(
            pool.map(lambda p: tuple(renderer.prompt_embeddings(p, "", 7.5)[0].shape), prompts)
        )
    assert len(set(shapes)) == 1
