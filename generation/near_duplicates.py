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
- **Brightness and contrast.** Each signature is centred (its mean over the cells subtracted,
  per channel), and the stored one is scaled by the gain that fits it best to the new one
  (least squares, one gain for all channels, clamped to ``GAIN_RANGE``), so a copy brightened,
  darkened or with its contrast changed by ±10% is as near as the image itself. Cells in which
  the new image has a pixel at 0 or 255 in a channel (what brightening clips) are left out of
  the fit and the distance, as are cells holding the edge strip a shift fills in.
  Computed at compare time from the stored raw signatures, whose format is unchanged.
- **Shift.** The new image is shifted by every whole-pixel offset up to ``MAX_SHIFT`` on each
  axis (``(2·MAX_SHIFT+1)²`` = 25 offsets; edges replicated), and the smallest distance wins.
- **Distance.** The largest absolute difference of any cell and channel (L∞), because honest
  images that share traits differ in a small area (one shape's colour, edge or size) and an
  average over the whole image would dilute it below the noise of a re-encoded copy.

The distance is 0 for an image and any copy of it shifted by up to ``MAX_SHIFT`` pixels at the
working size, and at most 1. :func:`nearest_distance` is the gate's score (``near_duplicate_min``,
rounded to 6 decimals like every gate score); the gate rejects an image whose score is at or
below the collection's ``near_duplicate_threshold``.

Measured on the reference world (docs/uniqueness.md has the tables; ``python -m
devtools.near_duplicate_figures --renders 1000`` prints them): the honest nearest-earlier
distance on 1,000 honest renders of the committed world diffusion model is p1 0.0146, p5 0.0206
(one set of seeds; the figures tool's set is in docs/uniqueness.md), on 1,000 drawn world images
p1 0.0198, p5 0.0299. :data:`DEFAULT_THRESHOLD` (0.013) re-renders about 1% of honest renders
and none of the drawn images, and catches every copy shifted by up to 2 pixels, jittered by ±4
levels or noised (σ 4), brightened or darkened by 5% or 10% (renders: 98-100%), or with its
contrast changed by 10%; JPEG re-encoding at quality 90 only 71% (drawn), blur 0.7 93%.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance

#: Side in pixels every image is resized to before it is compared.
WORK_SIZE = 64
#: Cells per side of the signature grid (``WORK_SIZE // GRID`` pixels per cell).
GRID = 8
#: Largest shift in working pixels, on each axis, that still counts as the same image.
MAX_SHIFT = 2
#: Length of a signature: one value per cell and RGB channel.
SIGNATURE_SIZE = GRID * GRID * 3
#: The range of the contrast gain fitted between two signatures: a copy whose contrast (or
#: brightness factor) was scaled by 0.8-1.25 is compared at its best gain.
GAIN_RANGE = (0.8, 1.25)
#: A channel of the new image with fewer usable (unsaturated) cells than this is compared on
#: all its cells: a saturated cell is left out only where most of the image is not saturated.
MIN_USABLE_CELLS = GRID * GRID // 2
#: The default ``near_duplicate_threshold``, chosen from the reference world's figures.
DEFAULT_THRESHOLD = 0.013
DECIMALS = 6

_CELLS = GRID * GRID


def _working(image: Image.Image) -> np.ndarray:
    """The image at the working size: (``WORK_SIZE``, ``WORK_SIZE``, 3) 8-bit RGB."""
    image = image.convert("RGB")
    if image.size != (WORK_SIZE, WORK_SIZE):
        image = image.resize((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8)


def _cell_sums(values: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """For each (row, column) origin, the sums of ``values`` (h, w, 3) over the
    ``GRID`` × ``GRID`` cells of the working-size window there: (origins, cells, 3), exact."""
    side = WORK_SIZE // GRID
    table = np.zeros((values.shape[0] + 1, values.shape[1] + 1, 3), dtype=np.int64)
    table[1:, 1:] = values.astype(np.int64).cumsum(axis=0).cumsum(axis=1)
    steps = side * np.arange(GRID + 1)
    rows = origins[:, 0, None, None] + steps[None, :, None]
    columns = origins[:, 1, None, None] + steps[None, None, :]
    corners = table[rows, columns]  # (origins, GRID + 1, GRID + 1, 3)
    sums = corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1] + corners[:, :-1, :-1]
    return sums.reshape(len(origins), _CELLS, 3)


def _cells(sums: np.ndarray) -> np.ndarray:
    side = WORK_SIZE // GRID
    return np.asarray(sums / (side * side * 255.0), dtype=np.float32)


def signature(image: Image.Image) -> np.ndarray:
    """The image's signature to store: ``SIGNATURE_SIZE`` float32 cell means (0–1), uncentred."""
    origin = np.zeros((1, 2), dtype=np.int64)
    return _cells(_cell_sums(_working(image), origin)).reshape(-1)


def _matrix(earlier: np.ndarray) -> np.ndarray:
    earlier = np.asarray(earlier, dtype=np.float32)
    if earlier.ndim != 2 or earlier.shape[1] != SIGNATURE_SIZE:
        raise ValueError(
            f"earlier signatures must be an (n, {SIGNATURE_SIZE}) matrix, got shape {earlier.shape}"
        )
    return earlier


def _queries(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The image shifted by every offset up to ``MAX_SHIFT`` (edges replicated): each shifted
    image's cells (shifts, cells, 3), and which of them are usable (same shape, booleans).

    A cell is usable in a channel when it holds no pixel at 0 or 255 there: a brightened or
    contrast-stretched copy clips its lightest and darkest pixels, which no gain undoes, so
    those cells are left out (honest renders of the reference world have 0.005% of their pixels
    at 0 or 255). A channel of a shifted image with fewer than ``MIN_USABLE_CELLS`` usable cells
    keeps them all, so an image that is mostly black or white is still compared everywhere.
    """
    pad = MAX_SHIFT
    padded = np.pad(_working(image), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = range(-MAX_SHIFT, MAX_SHIFT + 1)
    origins = np.array([(pad - dy, pad - dx) for dx in offsets for dy in offsets])
    cells = _cells(_cell_sums(padded, origins))
    clipped = _cell_sums((padded == 0) | (padded == 255), origins) > 0
    # the strip a shift fills by repeating the edge is not the image's: a render's edge is not
    # flat, so a cell holding part of that strip differs from the copy's by up to a quarter
    filled = np.ones(padded.shape, dtype=bool)
    filled[pad:-pad, pad:-pad] = False
    usable = ~clipped & ~(_cell_sums(filled, origins) > 0)
    few = usable.sum(axis=1) < MIN_USABLE_CELLS  # (shifts, 3)
    usable[few[:, None, :].repeat(_CELLS, axis=1)] = True
    return cells, usable


def _fitted(
    stored: np.ndarray,
    query: np.ndarray,
    usable: np.ndarray,
    everywhere: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """For each stored row (n, cells, 3), the L∞ residual over the usable cells of ``query``
    once both are centred per channel (over those cells) and the stored row is scaled by its
    least-squares gain, clamped to ``GAIN_RANGE``. ``everywhere``: the stored rows centred over
    all cells and their variances, when every cell is usable (the usual case)."""
    weight = usable.astype(np.float32)
    counts = weight.sum(axis=0)
    q = (query - (query * weight).sum(axis=0) / counts) * weight
    if everywhere is None:
        means = np.einsum("ncr,cr->nr", stored, weight) / counts
        centred = (stored - means[:, None, :]) * weight
        variance = np.einsum("ncr,ncr->n", centred, centred)
    else:
        centred, variance = everywhere
    covariance = np.einsum("ncr,cr->n", centred, q)
    gain = np.clip(covariance / np.maximum(variance, 1e-12), *GAIN_RANGE).astype(np.float32)
    return np.abs(centred * gain[:, None, None] - q).max(axis=(1, 2))


def distances(image: Image.Image, earlier: np.ndarray) -> np.ndarray:
    """The near-duplicate distance from ``image`` to each row of ``earlier`` (unrounded).

    ``earlier`` is an (n, ``SIGNATURE_SIZE``) matrix of stored signatures.
    """
    stored = _matrix(earlier).reshape(-1, _CELLS, 3)
    centred = stored - stored.mean(axis=1, keepdims=True)
    everywhere = (centred, np.einsum("ncr,ncr->n", centred, centred))
    nearest = np.full(stored.shape[0], np.inf, dtype=np.float32)
    for query, usable in zip(*_queries(image), strict=True):
        fitted = _fitted(stored, query, usable, everywhere if usable.all() else None)
        np.minimum(nearest, fitted, out=nearest)
    return nearest


def nearest_distance(image: Image.Image, earlier: np.ndarray) -> float | None:
    """The gate's score: the smallest near-duplicate distance from ``image`` to any row of
    ``earlier`` (the minimum of :func:`distances`), rounded to ``DECIMALS`` decimals; ``None``
    when ``earlier`` has no rows."""
    if not np.asarray(earlier).size:
        return None
    return round(float(distances(image, earlier).min()), DECIMALS)


def _jittered(image: Image.Image) -> Image.Image:
    # the same noise every time: a calibration must give the same proposal on every run
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    noise = np.random.default_rng(0).integers(-4, 5, size=pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def _moved(image: Image.Image, dx: int, dy: int) -> Image.Image:
    pixels = np.asarray(image.convert("RGB"))
    pad = max(abs(dx), abs(dy))
    padded = np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = pixels.shape[:2]
    return Image.fromarray(padded[pad - dy : pad - dy + h, pad - dx : pad - dx + w])


#: The copies a threshold must catch (``calibrate_gate`` measures them on its samples): what a
#: copier does to an image without changing what it shows.
COPIES = {
    "shifted 2 px diagonally": lambda image: _moved(image, 2, -2),
    "jittered ±4 levels": _jittered,
    "brightness +10%": lambda image: ImageEnhance.Brightness(image.convert("RGB")).enhance(1.1),
    "brightness -10%": lambda image: ImageEnhance.Brightness(image.convert("RGB")).enhance(0.9),
    "contrast +10%": lambda image: ImageEnhance.Contrast(image.convert("RGB")).enhance(1.1),
    "contrast -10%": lambda image: ImageEnhance.Contrast(image.convert("RGB")).enhance(0.9),
}


def copy_distances(image: Image.Image) -> dict[str, float]:
    """The distance from each of :data:`COPIES` of ``image`` to ``image`` (unrounded): a
    threshold at or above the largest catches them all."""
    stored = signature(image)[None]
    return {name: float(distances(make(image), stored)[0]) for name, make in COPIES.items()}
