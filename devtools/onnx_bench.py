"""ONNX Runtime against torch on the reference world (``python -m devtools.onnx_bench``).

Exports the diffusion model to ONNX, renders the same held-out captions with the same seeds
through the project's renderer twice (torch, then onnxruntime via ``use_onnx``) and prints: the
pixel difference between the two (mean and max absolute, 0-255: the tolerance a verifier
states), whether onnxruntime gives the same PNG bytes twice (and with another thread count),
what the oracle reads in each set, and milliseconds per image at batch 1 and batch 8 on one
thread. A benchmark, not a test: it prints figures and does not fail on them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from generation.onnx_export import export_onnx
from generation.onnx_runtime import use_onnx
from generation.reference_world.clip_training import HELD_OUT_SEED
from generation.reference_world.diffusion_training import oracle_accuracy
from generation.reference_world.oracle import read_traits
from generation.reference_world.samples import render_captions
from generation.reference_world.world import IMAGE_SIZE, dataset
from generation.rendering import Renderer, RenderParams, png_bytes
from generation.torch_threads import one_torch_thread

REFERENCE_MODEL = Path("models/reference-world/diffusion")


def pixel_difference(a: list[Image.Image], b: list[Image.Image]) -> dict[str, float]:
    """Mean and max absolute difference (0-255) over every pixel channel of two image lists,
    and how many pairs are identical."""
    diffs = [
        np.abs(np.asarray(x, dtype=np.int16) - np.asarray(y, dtype=np.int16))
        for x, y in zip(a, b, strict=True)
    ]
    return {
        "mean_abs": float(np.mean([d.mean() for d in diffs])),
        "max_abs": int(max(d.max() for d in diffs)),
        "identical_images": sum(int(d.max() == 0) for d in diffs),
        "images": len(diffs),
    }


def _ms_per_image(renderers: dict[str, Renderer], batch: int, steps: int, rounds: int) -> dict:
    """Median milliseconds per image of each renderer at ``batch``; the renderers take turns
    round by round, so a busy neighbour on the machine slows each alike."""
    params = RenderParams("", "", steps, 4.0, IMAGE_SIZE, IMAGE_SIZE)
    text = next(dataset(1, HELD_OUT_SEED + 1)).caption
    times: dict[str, list[float]] = {name: [] for name in renderers}
    for round_ in range(rounds + 1):
        for name, renderer in renderers.items():
            embeds = renderer.prompt_embeddings(text, "", 4.0)
            requests = [(embeds, f"speed:{i}".encode(), 0) for i in range(batch)]
            started = time.perf_counter()
            renderer.render_many(params, requests)
            if round_:  # round 0 warms up
                times[name].append((time.perf_counter() - started) / batch)
    return {f"{name}_ms": 1000 * statistics.median(t) for name, t in times.items()}


def run(count: int = 32, steps: int = 20, rounds: int = 5) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="onnx-bench-") as tmp:
        onnx_dir = Path(tmp) / "onnx"
        started = time.perf_counter()
        manifest = export_onnx(REFERENCE_MODEL, onnx_dir)
        export_s = time.perf_counter() - started
        items = list(dataset(count, HELD_OUT_SEED + 1))
        captions = [item.caption for item in items]

        def seed(i: int) -> bytes:
            return f"sample:{i}".encode()

        torch_renderer = Renderer(REFERENCE_MODEL, device="cpu")
        onnx_renderer = Renderer(REFERENCE_MODEL, device="cpu")
        use_onnx(onnx_renderer.pipe, onnx_dir, "cpu", threads=1)
        two_threads = Renderer(REFERENCE_MODEL, device="cpu")
        use_onnx(two_threads.pipe, onnx_dir, "cpu", threads=2)

        def render(renderer: Renderer) -> list[Image.Image]:
            return render_captions(renderer, captions, seed, steps=steps, guidance=4.0)

        torch_images = render(torch_renderer)
        onnx_images = render(onnx_renderer)
        onnx_again = render(onnx_renderer)
        onnx_two = render(two_threads)
        same = [png_bytes(a) == png_bytes(b) for a, b in zip(onnx_images, onnx_again, strict=True)]
        same_two = [
            png_bytes(a) == png_bytes(b) for a, b in zip(onnx_images, onnx_two, strict=True)
        ]
        traits = [item.traits for item in items]
        with one_torch_thread():
            renderers = {"torch": torch_renderer, "onnx": onnx_renderer}
            speed = {
                f"batch {batch}": _ms_per_image(renderers, batch, steps, rounds) for batch in (1, 8)
            }
        return {
            "renders": count,
            "steps": steps,
            "export_seconds": export_s,
            "export_fingerprint": manifest["fingerprint"],
            "onnx_vs_torch": pixel_difference(torch_images, onnx_images),
            "onnx_twice_identical_png": f"{sum(same)}/{len(same)}",
            "onnx_1_vs_2_threads_identical_png": f"{sum(same_two)}/{len(same_two)}",
            "onnx_1_vs_2_threads": pixel_difference(onnx_images, onnx_two),
            "oracle_torch": oracle_accuracy(torch_images, traits),
            "oracle_onnx": oracle_accuracy(onnx_images, traits),
            "oracle_same_reading": sum(
                a == b
                for a, b in zip(
                    [_reading(i) for i in torch_images],
                    [_reading(i) for i in onnx_images],
                    strict=True,
                )
            ),
            "ms_per_image_one_thread": speed,
            "load_average_after": os.getloadavg(),
        }


def _reading(image: Image.Image) -> dict[str, str | None]:
    return dict(read_traits(image).traits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(run(args.count, args.steps, args.rounds), indent=2))


if __name__ == "__main__":
    main()
