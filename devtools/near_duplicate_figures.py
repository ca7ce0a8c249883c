"""The figures behind the near-duplicate threshold (docs/uniqueness.md), on the reference world.

``python -m devtools.near_duplicate_figures [--images 1000] [--renders 0] [--copies 200]
[--clip DIR]``

Draws ``--images`` reference-world images with the collection's odds and compares each with the
ones before it, as the gate does (the honest tokens' nearest earlier image), and puts the first
``--copies`` through each copy transformation (shifts, JPEG, noise, brightness, contrast, blur
and combinations) to measure the distance between an image and its copy. With ``--renders N``
it does the same on N honest renders of the committed world diffusion model (``--models``,
default ``models/reference-world``): traits drawn with the collection's odds from the seeds
``sha256(utf8(f"near-duplicate-figures:{i}"))``, rendered from their captions at the world
collection's steps and guidance on one CPU thread (about 0.2-0.6 s an image here), which is what
the gate sees. With ``--clip`` it also prints the CLIP image-to-image cosine for the drawn pairs
(what the old uniqueness check compared). A measurement, not a test: it prints figures and
fails on nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from generation import near_duplicates
from generation.reference_world.world import caption, dataset, world_traits

Transform = Callable[[Image.Image, np.random.Generator], Image.Image]


def shift(image: Image.Image, dx: int, dy: int) -> Image.Image:
    """``image`` moved by (dx, dy) pixels, the uncovered edge replicated."""
    a = np.asarray(image.convert("RGB"))
    padded = np.pad(a, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="edge")
    y0, x0 = abs(dy) - dy, abs(dx) - dx
    return Image.fromarray(padded[y0 : y0 + a.shape[0], x0 : x0 + a.shape[1]])


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def noise(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(image.convert("RGB"), dtype=np.float64)
    a = a + rng.normal(0.0, sigma, a.shape)
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


def brightness(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(image.convert("RGB")).enhance(factor)


def contrast(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Contrast(image.convert("RGB")).enhance(factor)


def jittered(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Each channel of each pixel moved by a uniform integer in -4..4 (the accuracy bench's)."""
    a = np.asarray(image.convert("RGB"), dtype=np.int16)
    return Image.fromarray(np.clip(a + rng.integers(-4, 5, size=a.shape), 0, 255).astype(np.uint8))


COPIES: dict[str, Transform] = {
    "shift 1 px": lambda im, rng: shift(im, 1, 0),
    "shift 1 px diagonal": lambda im, rng: shift(im, 1, -1),
    "shift 2 px": lambda im, rng: shift(im, 0, 2),
    "shift 2 px diagonal": lambda im, rng: shift(im, -2, 2),
    "JPEG quality 90": lambda im, rng: jpeg(im, 90),
    "JPEG quality 75": lambda im, rng: jpeg(im, 75),
    "JPEG quality 50": lambda im, rng: jpeg(im, 50),
    "jitter ±4": jittered,
    "noise σ 4": lambda im, rng: noise(im, 4, rng),
    "noise σ 8": lambda im, rng: noise(im, 8, rng),
    "blur 0.7": lambda im, rng: im.filter(ImageFilter.GaussianBlur(0.7)),
    "brightness +5%": lambda im, rng: brightness(im, 1.05),
    "brightness -5%": lambda im, rng: brightness(im, 0.95),
    "brightness +10%": lambda im, rng: brightness(im, 1.10),
    "brightness -10%": lambda im, rng: brightness(im, 0.90),
    "contrast +10%": lambda im, rng: contrast(im, 1.10),
    "contrast -10%": lambda im, rng: contrast(im, 0.90),
    "brightness +10%, contrast -10%": lambda im, rng: contrast(brightness(im, 1.10), 0.90),
    "shift 1, JPEG 80, +5%, noise σ 3": lambda im, rng: noise(
        brightness(jpeg(shift(im, 1, 1), 80), 1.05), 3, rng
    ),
    "shift 2, JPEG 75, -8%, noise σ 5": lambda im, rng: noise(
        brightness(jpeg(shift(im, 2, -1), 75), 0.92), 5, rng
    ),
}


def _quantiles(values: Sequence[float]) -> str:
    v = np.asarray(values, dtype=np.float64)
    marks = [("min", v.min()), ("p0.1", np.quantile(v, 0.001)), ("p1", np.quantile(v, 0.01))]
    marks += [("p5", np.quantile(v, 0.05)), ("median", np.median(v)), ("max", v.max())]
    return ", ".join(f"{name} {value:.4f}" for name, value in marks)


def honest_renders(models: Path, count: int) -> tuple[list[Image.Image], list[tuple]]:
    """``count`` honest renders of the world collection's model and their traits: traits drawn
    with the collection's odds, each rendered from its caption as the collection renders it."""
    import torch

    from generation.reference_world.collection import GATE
    from generation.reference_world.samples import render_captions
    from generation.rendering import Renderer

    seeds = [hashlib.sha256(f"near-duplicate-figures:{i}".encode()).digest() for i in range(count)]
    traits = [world_traits(seed) for seed in seeds]
    torch.set_num_threads(1)
    images = render_captions(
        Renderer(models / "diffusion", device="cpu"),
        [caption(t) for t in traits],
        lambda i: seeds[i],
        steps=GATE.steps,
        guidance=GATE.guidance,
    )
    return images, [tuple(sorted(t.items())) for t in traits]


def figures(
    label: str, images: list[Image.Image], keys: list[tuple], copies: int, threshold: float
) -> dict[str, list[Image.Image]]:
    """Print the honest nearest-earlier distances of ``images`` and the copies' distances;
    return the copies made of the first ``copies`` images, by transformation."""
    rng = np.random.default_rng(0)
    signatures = np.stack([near_duplicates.signature(image) for image in images])
    nearest, same_traits = [], []
    for i in range(1, len(images)):
        distances = near_duplicates.distances(images[i], signatures[:i])
        nearest.append(float(distances.min()))
        same_traits += [float(d) for j, d in enumerate(distances) if keys[j] == keys[i]]
    print(f"near-duplicate distance, {label}")
    print(f"  honest, nearest earlier image: {_quantiles(nearest)}")
    rejected = sum(d <= threshold for d in nearest)
    print(
        f"    at or below {threshold}: {rejected} of {len(nearest)} "
        f"({100 * rejected / len(nearest):.1f}%) would be re-rendered"
    )
    if same_traits:
        print(f"  honest same-trait pairs ({len(same_traits)}): {_quantiles(same_traits)}")
    print(f"  copies of the first {copies} images (share caught at {threshold}):")
    copied: dict[str, list[Image.Image]] = {}
    for name, transform in COPIES.items():
        copied[name] = [transform(image, rng) for image in images[:copies]]
        v = np.asarray(
            [
                near_duplicates.distances(copy, signatures[k : k + 1])[0]
                for k, copy in enumerate(copied[name])
            ],
            dtype=np.float64,
        )
        print(
            f"    {name:34s} median {np.median(v):.4f}  p99 {np.quantile(v, 0.99):.4f}  "
            f"max {v.max():.4f}  caught {np.mean(v <= threshold):.2f}"
        )
    return copied


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="drawn world images")
    parser.add_argument(
        "--renders", type=int, default=0, help="honest renders of the world model (0: none)"
    )
    parser.add_argument("--models", type=Path, default=Path("models/reference-world"))
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threshold", type=float, default=near_duplicates.DEFAULT_THRESHOLD)
    parser.add_argument("--clip", help="a CLIP folder: also print image-to-image cosines")
    args = parser.parse_args(argv)
    items = list(dataset(args.images, args.seed, balanced=False))
    keys = [tuple(sorted(item.traits.items())) for item in items]
    drawn = [item.image for item in items]
    label = f"{len(items)} drawn reference-world images (seed {args.seed})"
    copied = figures(label, drawn, keys, args.copies, args.threshold)
    if args.renders:
        renders, render_keys = honest_renders(args.models, args.renders)
        label = f"{len(renders)} honest renders of {args.models / 'diffusion'} (traits drawn)"
        figures(label, renders, render_keys, args.copies, args.threshold)
    if args.clip:
        from generation.clip_gate import ClipScorer

        scorer = ClipScorer(args.clip, "cpu")
        embeddings = np.stack([scorer.image_embedding(image) for image in drawn])
        cosine = embeddings @ embeddings.T
        pairs = [(i, j) for i in range(len(items)) for j in range(i)]
        same = [cosine[i, j] for i, j in pairs if keys[i] == keys[j]]
        other = [cosine[i, j] for i, j in pairs if keys[i] != keys[j]]
        print(f"CLIP image-to-image cosine ({args.clip})")
        print(f"  honest same-trait pairs ({len(same)}): {_quantiles(same)}")
        print(f"  honest different-trait pairs ({len(other)}): {_quantiles(other)}")
        for name, images in copied.items():
            values = [
                float(scorer.image_embedding(copy) @ embeddings[k]) for k, copy in enumerate(images)
            ]
            print(f"  copy, {name:34s} {_quantiles(values)}")


if __name__ == "__main__":
    main()
