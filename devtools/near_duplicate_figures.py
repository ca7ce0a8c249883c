"""The figures behind the near-duplicate threshold (docs/uniqueness.md), on the reference world.

``python -m devtools.near_duplicate_figures [--images 1000] [--copies 200] [--clip DIR]``

Draws ``--images`` reference-world images with the collection's odds and compares each with the
ones before it, as the gate does (the honest tokens' nearest earlier image), and puts the first
``--copies`` through each copy transformation (shifts, JPEG, noise, brightness, blur and
combinations) to measure the distance between an image and its copy. With ``--clip`` it also
prints the CLIP image-to-image cosine for the same pairs (what the old uniqueness check
compared). A measurement, not a test: it prints figures and fails on nothing.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from generation import near_duplicates
from generation.reference_world.world import dataset

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


COPIES: dict[str, Transform] = {
    "shift 1 px": lambda im, rng: shift(im, 1, 0),
    "shift 1 px diagonal": lambda im, rng: shift(im, 1, -1),
    "shift 2 px": lambda im, rng: shift(im, 0, 2),
    "shift 2 px diagonal": lambda im, rng: shift(im, -2, 2),
    "JPEG quality 90": lambda im, rng: jpeg(im, 90),
    "JPEG quality 75": lambda im, rng: jpeg(im, 75),
    "JPEG quality 50": lambda im, rng: jpeg(im, 50),
    "noise σ 4": lambda im, rng: noise(im, 4, rng),
    "noise σ 8": lambda im, rng: noise(im, 8, rng),
    "blur 0.7": lambda im, rng: im.filter(ImageFilter.GaussianBlur(0.7)),
    "brightness +5%": lambda im, rng: brightness(im, 1.05),
    "brightness +10%": lambda im, rng: brightness(im, 1.10),
    "brightness -10%": lambda im, rng: brightness(im, 0.90),
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threshold", type=float, default=near_duplicates.DEFAULT_THRESHOLD)
    parser.add_argument("--clip", help="a CLIP folder: also print image-to-image cosines")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    items = list(dataset(args.images, args.seed, balanced=False))
    keys = [tuple(sorted(item.traits.items())) for item in items]
    signatures = np.stack([near_duplicates.signature(item.image) for item in items])

    nearest, same_traits = [], []
    for i in range(1, len(items)):
        distances = near_duplicates.distances(items[i].image, signatures[:i])
        nearest.append(float(distances.min()))
        same_traits += [float(d) for j, d in enumerate(distances) if keys[j] == keys[i]]
    threshold = args.threshold
    print(f"near-duplicate distance, {len(items)} reference-world images (seed {args.seed})")
    print(f"  honest, nearest earlier image: {_quantiles(nearest)}")
    rejected = sum(d <= threshold for d in nearest)
    print(
        f"    at or below {threshold}: {rejected} of {len(nearest)} "
        f"({100 * rejected / len(nearest):.1f}%) would be re-rendered"
    )
    print(f"  honest same-trait pairs ({len(same_traits)}): {_quantiles(same_traits)}")
    print(f"  copies of the first {args.copies} images (share caught at {threshold}):")
    copies = items[: args.copies]
    copied: dict[str, list[Image.Image]] = {}
    for name, transform in COPIES.items():
        copied[name] = [transform(item.image, rng) for item in copies]
        v = np.asarray(
            [
                near_duplicates.distances(copy, signatures[k : k + 1])[0]
                for k, copy in enumerate(copied[name])
            ],
            dtype=np.float64,
        )
        print(
            f"    {name:34s} median {np.median(v):.4f}  max {v.max():.4f}  "
            f"caught {np.mean(v <= threshold):.2f}"
        )
    if args.clip:
        from generation.clip_gate import ClipScorer

        scorer = ClipScorer(args.clip, "cpu")
        embeddings = np.stack([scorer.image_embedding(item.image) for item in items])
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
