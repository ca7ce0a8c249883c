"""Near-duplicate distance between images: what the gate's uniqueness check measures.

A CLIP embedding is the wrong tool for "is this the same image again?": a CLIP trained to read
a collection's traits puts two different images with the same traits as close together as an
image and its own copy (on the reference world, cosine 0.975 on average for two honest
same-trait images; docs/reference-world.md). This module compares pixels instead, in a way that
forgives what a copy goes through and nothing else:

- **Working size.** Each image is resized (box filter) to ``WORK_SIZE`` square, so collections
  of any size compare the same way.
- **Signature.** The working image is averaged over a ``GRID`` × ``GRID`` grid of cells (8
  pixels square at 64), per RGB channel, on the 0–1 scale: 192 numbers, stored per accepted
  token as float32 little-endian bytes (768 bytes). Averaging over cells washes out noise,
  re-encoding and blur.
- **Brightness.** Each signature is centred (its mean over the cells subtracted, per channel)
  before comparing, so the same amount added everywhere does not count (a brightness factor
  still scales the contrast: a copy brightened by 5% is caught about half the time).
- **Shift.** The new image is shifted by every whole-pixel offset up to ``MAX_SHIFT`` on each
  axis (``(2·MAX_SHIFT+1)²`` = 25 offsets; edges replicated), and the smallest distance wins.
- **Distance.** The largest absolute difference of any cell and channel (L∞), because honest
  images that share traits differ in a small area (one shape's colour, edge or size) and an
  average over the whole image would dilute it below the noise of a re-encoded copy.

The distance is 0 for an image and any copy of it shifted by up to ``MAX_SHIFT`` pixels at the
working size, and at most 1. :func:`nearest_distance` is the gate's score (``near_duplicate_min``,
rounded to 6 decimals like every gate score); the gate rejects an image whose score is at or
below the collection's ``near_duplicate_threshold``.

Measured on the reference world (generation/reference_world/world.py; docs/uniqueness.md has
the tables; ``python -m devtools.near_duplicate_figures`` prints them): 1,000 images drawn with
the collection's odds, each compared with the ones before it as the gate does, and 200 images
put through each of 15 copy transformations. :data:`DEFAULT_THRESHOLD` (0.03) re-renders 1.0%
of those honest images (10 of 999: each nearly pixel-identical to an earlier one, every 8-pixel
cell within 8 levels of 255 once aligned) and catches every copy shifted by up to 2 pixels,
noised (σ 8) or re-encoded as JPEG at quality 90, 99% of those blurred (0.7), 92% at JPEG
quality 75, and about half of those brightened by 5%.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Side in pixels every image is resized to before it is compared.
WORK_SIZE = 64
#: Cells per side of the signature grid (``WORK_SIZE // GRID`` pixels per cell).
GRID = 8
#: Largest shift in working pixels, on each axis, that still counts as the same image.
MAX_SHIFT = 2
#: Length of a signature: one value per cell and RGB channel.
SIGNATURE_SIZE = GRID * GRID * 3
#: The default ``near_duplicate_threshold``, chosen from the reference world's figures.
DEFAULT_THRESHOLD = 0.03
DECIMALS = 6


def _working(image: Image.Image) -> np.ndarray:
    image = image.convert("RGB")
    if image.size != (WORK_SIZE, WORK_SIZE):
        image = image.resize((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float64) / 255.0


def _cells(pixels: np.ndarray) -> np.ndarray:
    side = WORK_SIZE // GRID
    cells = pixels.reshape(GRID, side, GRID, side, 3).mean(axis=(1, 3))
    return np.asarray(cells.reshape(-1), dtype=np.float32)


def _shifted(pixels: np.ndarray, dx: int, dy: int) -> np.ndarray:
    pad = MAX_SHIFT
    padded = np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return padded[pad - dy : pad - dy + WORK_SIZE, pad - dx : pad - dx + WORK_SIZE]


def _centred(signatures: np.ndarray) -> np.ndarray:
    rows = np.asarray(signatures, dtype=np.float32).reshape(-1, GRID * GRID, 3)
    return (rows - rows.mean(axis=1, keepdims=True)).reshape(-1, SIGNATURE_SIZE)


def signature(image: Image.Image) -> np.ndarray:
    """The image's signature to store: ``SIGNATURE_SIZE`` float32 cell means (0–1), uncentred."""
    return _cells(_working(image))


def _matrix(earlier: np.ndarray) -> np.ndarray:
    earlier = np.asarray(earlier, dtype=np.float32)
    if earlier.ndim != 2 or earlier.shape[1] != SIGNATURE_SIZE:
        raise ValueError(
            f"earlier signatures must be an (n, {SIGNATURE_SIZE}) matrix, got shape {earlier.shape}"
        )
    return earlier


def _queries(image: Image.Image) -> np.ndarray:
    """The centred signatures of ``image`` shifted by every offset: (shifts, SIGNATURE_SIZE)."""
    pixels = _working(image)
    offsets = range(-MAX_SHIFT, MAX_SHIFT + 1)
    return _centred(
        np.stack([_cells(_shifted(pixels, dx, dy)) for dx in offsets for dy in offsets])
    )


def _linf(queries: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """For each stored (centred) row, the smallest over ``queries`` of the L∞ distance."""
    nearest = np.full(stored.shape[0], np.inf, dtype=np.float32)
    for query in queries:
        np.minimum(nearest, np.abs(stored - query).max(axis=1), out=nearest)
    return nearest


def distances(image: Image.Image, earlier: np.ndarray) -> np.ndarray:
    """The near-duplicate distance from ``image`` to each row of ``earlier`` (unrounded).

    ``earlier`` is an (n, ``SIGNATURE_SIZE``) matrix of stored signatures.
    """
    return _linf(_queries(image), _centred(_matrix(earlier)))


def nearest_distance(image: Image.Image, earlier: np.ndarray) -> float | None:
    """The gate's score: the smallest near-duplicate distance from ``image`` to any row of
    ``earlier`` (the minimum of :func:`distances`), rounded to ``DECIMALS`` decimals; ``None``
    when ``earlier`` has no rows."""
    if not np.asarray(earlier).size:
        return None
    return round(float(distances(image, earlier).min()), DECIMALS)
