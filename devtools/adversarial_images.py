"""Deliberately wrong images for ``manage.py bench_accuracy``: what the CLIP gate must refuse.

Every maker takes the image side and a ``numpy.random.Generator`` and returns an RGB image of
that size, so a run replays from its seed. None of them is a picture of the reference world
(docs/reference-world.md): the oracle (generation/reference_world/oracle.py) reads none of
their traits, which the bench's test checks.

- **off-style**: a linear gradient between two random colours; stripes (2-6 px, random angle
  and colours); a few words of text on a plain background; a photo-like texture (noise summed
  over octaves, so it has structure at every scale, like a photograph's shading); a
  checkerboard.
- **blank**: one flat colour, or a flat colour with faint noise (standard deviation under the
  gate's blank limit of 2 on 0-255).
- **noise**: uniform RGB noise, or Gaussian noise around a random colour.
- **duplicates** of an existing image: the exact copy, and near copies (shifted by 1-2 pixels,
  the uncovered edge filled from the nearest row or column; each pixel jittered by up to ±4;
  brightness scaled by 0.95-1.05).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

Maker = Callable[[int, np.random.Generator], Image.Image]

_WORDS = ("MINT", "token", "NFT", "hello", "42", "gm", "rare", "shape", "OK", "art")


def _image(pixels: NDArray[Any]) -> Image.Image:
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), mode="RGB")


def _colour(rng: np.random.Generator) -> NDArray[np.float64]:
    return rng.uniform(0, 255, size=3)


def gradient(size: int, rng: np.random.Generator) -> Image.Image:
    """A linear gradient between two random colours at a random angle."""
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    t = np.cos(angle) * x + np.sin(angle) * y
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    start, end = _colour(rng), _colour(rng)
    return _image(start + (end - start) * t[..., None])


def stripes(size: int, rng: np.random.Generator) -> Image.Image:
    """Stripes 2-6 pixels wide at a random angle, in two random colours."""
    angle = rng.uniform(0, np.pi)
    width = rng.integers(2, 7)
    y, x = np.mgrid[0:size, 0:size]
    band = ((np.cos(angle) * x + np.sin(angle) * y) // width).astype(int) % 2
    colours = np.stack([_colour(rng), _colour(rng)])
    return _image(colours[band])


def text(size: int, rng: np.random.Generator) -> Image.Image:
    """Two or three words in a random colour on a plain background of another."""
    background = tuple(int(c) for c in _colour(rng))
    ink = tuple(255 - c for c in background)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(8, size // 5))
    for line in range(int(rng.integers(2, 4))):
        word = _WORDS[int(rng.integers(len(_WORDS)))]
        x = int(rng.integers(0, max(1, size // 3)))
        draw.text((x, 4 + line * size // 3), word, fill=ink, font=font)
    return image


def photo_noise(size: int, rng: np.random.Generator) -> Image.Image:
    """Noise summed over octaves (1/f-like): soft structure at every scale, in colour."""
    pixels = np.zeros((size, size, 3))
    scale = 2
    amplitude = 1.0
    while scale <= size:
        coarse = rng.normal(0, 1, size=(scale, scale, 3))
        layer = np.asarray(
            Image.fromarray(
                ((coarse - coarse.min()) / np.ptp(coarse) * 255).astype(np.uint8)
            ).resize((size, size), Image.Resampling.BICUBIC),
            dtype=np.float64,
        )
        pixels += amplitude * (layer - 128)
        scale *= 2
        amplitude *= 0.6
    pixels = (pixels - pixels.mean()) / max(pixels.std(), 1e-9)
    return _image(128 + 50 * pixels + rng.normal(0, 20, size=3))


def checkerboard(size: int, rng: np.random.Generator) -> Image.Image:
    """Squares of 4-12 pixels in two random colours."""
    cell = int(rng.integers(4, 13))
    y, x = np.mgrid[0:size, 0:size]
    colours = np.stack([_colour(rng), _colour(rng)])
    return _image(colours[((x // cell) + (y // cell)) % 2])


def flat(size: int, rng: np.random.Generator) -> Image.Image:
    """One random colour everywhere."""
    return _image(np.broadcast_to(_colour(rng), (size, size, 3)))


def faint(size: int, rng: np.random.Generator) -> Image.Image:
    """A random colour with faint noise (standard deviation about 1 on 0-255)."""
    colour = rng.uniform(10, 245, size=3)
    return _image(colour + rng.normal(0, 1.0, size=(size, size, 3)))


def uniform_noise(size: int, rng: np.random.Generator) -> Image.Image:
    """Every channel of every pixel uniform on 0-255."""
    return _image(rng.uniform(0, 256, size=(size, size, 3)))


def gaussian_noise(size: int, rng: np.random.Generator) -> Image.Image:
    """Gaussian noise (standard deviation 20-60) around a random colour."""
    return _image(_colour(rng) + rng.normal(0, rng.uniform(20, 60), size=(size, size, 3)))


OFF_STYLE: dict[str, Maker] = {
    "gradient": gradient,
    "stripes": stripes,
    "text": text,
    "photo-like noise": photo_noise,
    "checkerboard": checkerboard,
}
BLANK: dict[str, Maker] = {"flat": flat, "faint": faint}
NOISE: dict[str, Maker] = {"uniform noise": uniform_noise, "gaussian noise": gaussian_noise}


def exact_copy(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The same pixels."""
    return image.convert("RGB").copy()


def shifted(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shifted by 1-2 pixels on each axis (either way); the uncovered edge repeats its
    neighbour."""
    pixels = np.asarray(image.convert("RGB"))
    dy, dx = (int(rng.integers(1, 3)) * int(rng.choice([-1, 1])) for _ in range(2))
    h, w = pixels.shape[:2]
    padded = np.pad(pixels, ((2, 2), (2, 2), (0, 0)), mode="edge")
    return Image.fromarray(padded[2 - dy : 2 - dy + h, 2 - dx : 2 - dx + w].copy(), mode="RGB")


def jittered(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Each channel of each pixel moved by a uniform integer in -4..4."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return _image(pixels + rng.integers(-4, 5, size=pixels.shape))


def rebrightened(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness scaled by a factor in 0.95-1.05."""
    return _image(np.asarray(image.convert("RGB"), dtype=np.float64) * rng.uniform(0.95, 1.05))


DUPLICATES: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "exact copy": exact_copy,
    "shifted 1-2 px": shifted,
    "jittered ±4": jittered,
    "brightness ±5%": rebrightened,
}
