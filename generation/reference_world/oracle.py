"""The world's oracle: an image's traits measured from its pixels alone.

It shares nothing with the CLIP gate (no model, no text), so it can judge the gate. Each
category is read by its own pixel measure, and a category it cannot tell is ``None``, never a
guess. An image without one clear world object on a plain background (noise, a blank fill,
another kind of picture) reads ``None`` in every category.

1. **Background.** The ring of pixels just inside the frame band (depth ``FRAME_WIDTH + 1`` to
   ``FRAME_WIDTH + 3`` from the edge, where no shape reaches) after a 3×3 median filter: its
   median colour is the background, and it must be plain (90% of the ring within
   ``RING_SPREAD`` of that colour) or the image is not a world image. ``light`` when its
   luminance (Rec. 709) is above 0.6, ``dark`` below 0.4, else ``None``.
2. **Edition.** The frame band (the outer ``FRAME_WIDTH`` pixels): ``legendary`` when at least
   60% of its pixels are gold (hue 30-60 degrees, chroma at least 0.3, value at least 0.5) and
   every side is at least 40% gold; ``common`` when under 5% is gold and at least 80% is the
   background colour; else ``None``.
3. **The object.** Pixels farther than 0.3 from the background colour give a first estimate of
   the object's colour; then each inner pixel's position between the background and that colour
   (its projection on the line through them) is its coverage, and the mask is coverage > 1/2,
   the contour a blur leaves in place. The largest 4-connected component, holes filled, is the
   object; it must hold ``MIN_AREA`` pixels and ``MIN_OBJECT_SHARE`` (80%) of the mask, else
   every object trait is ``None``.
4. **Colour.** The chroma-weighted circular mean hue of the object's inner pixels (coverage >
   0.8): the colour whose hue is within 25 degrees, when the object's median chroma is at least
   0.25 and its hues spread (circular standard deviation) under 20 degrees.
5. **Size.** The circumradius: the largest distance from the object's centroid to a pixel's
   centre, plus half a pixel. ``small`` up to 12.5, ``large`` from 13.5, ``None`` between.
6. **Shape.** Ratios of the object's pixels, each a property one shape has and the others lack,
   and each kept by a blur: ``balance``, the pixels in the upper half of its bounding box over
   those in the lower half (an upright triangle about 1/3, circle and square 1); ``corner``,
   its mean extent along the two diagonals over its mean extent along the axes (a square's
   corners give √2, a circle 1, a triangle about 1.07); ``fill``, its area over its bounding
   box's (circle 0.79, square 1, triangle 0.5); ``radial``, its area over the circle of its
   circumradius (circle 1, square 0.64, triangle 0.41). ``triangle`` when balance ≤ 0.68 and
   corner < 1.16; ``square`` when balance ≥ 0.75, corner ≥ 1.16 and fill ≥ 0.72; ``circle``
   when balance ≥ 0.75, corner ≤ 1.11 and radial ≥ 0.8; else ``None``.

Images of another size are resized to ``IMAGE_SIZE`` (box filter) first. The numbers behind
each decision are returned in :attr:`Reading.measures`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from generation.reference_world.world import (
    CATEGORIES,
    COLOUR_HUES,
    FRAME_WIDTH,
    IMAGE_SIZE,
    MAX_OFFSET,
    STYLES,
    edge_depth,
    frame_mask,
)

RING_SPREAD = 0.12
MIN_AREA = 40
MIN_OBJECT_SHARE = 0.8
_OBJECT_CATEGORIES = ("shape", "colour", "size")
_FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Reading:
    """What the oracle read: ``traits`` has every category, ``None`` where it cannot tell."""

    traits: dict[str, str | None]
    measures: dict[str, float] = field(default_factory=dict)

    def correct(self, expected: Mapping[str, str]) -> dict[str, bool]:
        """Category → whether the reading is the expected option (``None`` is never right)."""
        return {name: self.traits.get(name) == value for name, value in expected.items()}


def _unknown(measures: dict[str, float], **known: str | None) -> Reading:
    traits: dict[str, str | None] = dict.fromkeys(CATEGORIES)
    traits.update(known)
    return Reading(traits, measures)


def _median3(pixels: _FloatArray) -> _FloatArray:
    return np.asarray(ndimage.median_filter(pixels, size=(3, 3, 1), mode="nearest"))


def _hsv(pixels: _FloatArray) -> tuple[_FloatArray, _FloatArray, _FloatArray]:
    """Hue in degrees, chroma and value of RGB pixels in [0, 1] (last axis)."""
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    high = pixels.max(axis=-1)
    chroma = high - pixels.min(axis=-1)
    hue = np.degrees(np.arctan2(np.sqrt(3.0) * (g - b), 2.0 * r - g - b)) % 360.0
    return hue, chroma, high


def _luminance(rgb: _FloatArray) -> float:
    return float(rgb @ np.array([0.2126, 0.7152, 0.0722]))


def read_traits(image: Image.Image) -> Reading:
    """Measure ``image``'s traits from its pixels (see the module doc)."""
    rgb = image.convert("RGB")
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    raw = np.asarray(rgb, dtype=np.float64) / 255.0
    smooth = _median3(raw)
    depth = edge_depth()
    measures: dict[str, float] = {}

    ring = smooth[(depth > FRAME_WIDTH) & (depth <= FRAME_WIDTH + 3)]
    background = np.median(ring, axis=0)
    spread = float(np.quantile(np.linalg.norm(ring - background, axis=-1), 0.9))
    measures["ring_spread"] = spread
    if spread > RING_SPREAD:
        return _unknown(measures)
    luminance = _luminance(background)
    measures["background_luminance"] = luminance
    background_name = "light" if luminance > 0.6 else "dark" if luminance < 0.4 else None

    edition = _edition(smooth, background, measures)
    object_traits = _object(raw, smooth, background, depth, measures)
    if object_traits is None:
        return _unknown(measures)
    return Reading(
        {
            "shape": object_traits["shape"],
            "colour": object_traits["colour"],
            "background": background_name,
            "size": object_traits["size"],
            "edition": edition,
        },
        measures,
    )


def _edition(
    smooth: _FloatArray, background: _FloatArray, measures: dict[str, float]
) -> str | None:
    band = frame_mask()
    hue, chroma, value = _hsv(smooth)
    gold = (hue >= 30.0) & (hue <= 60.0) & (chroma >= 0.3) & (value >= 0.5)
    gold_share = float(gold[band].mean())
    w = FRAME_WIDTH
    sides = (gold[:w, :], gold[-w:, :], gold[:, :w], gold[:, -w:])
    weakest_side = min(float(side.mean()) for side in sides)
    plain = np.linalg.norm(smooth - background, axis=-1) <= 0.15
    plain_share = float(plain[band].mean())
    measures.update(
        frame_gold=gold_share, frame_gold_weakest_side=weakest_side, frame_plain=plain_share
    )
    if gold_share >= 0.6 and weakest_side >= 0.4:
        return "legendary"
    if gold_share < 0.05 and plain_share >= 0.8:
        return "common"
    return None


def _object(
    raw: _FloatArray,
    smooth: _FloatArray,
    background: _FloatArray,
    depth: NDArray[np.int64],
    measures: dict[str, float],
) -> dict[str, str | None] | None:
    """The object's shape, colour and size, or None when there is no single clear object."""
    inner = depth > FRAME_WIDTH
    far = inner & (np.linalg.norm(smooth - background, axis=-1) > 0.3)
    if int(far.sum()) < MIN_AREA // 2:
        measures["object_area"] = float(far.sum())
        return None
    direction = np.median(smooth[far], axis=0) - background
    coverage = ((raw - background) @ direction) / float(direction @ direction)
    mask = inner & (coverage > 0.5)
    component = np.asarray(ndimage.binary_fill_holes(_largest_component(mask)), dtype=bool)
    area = int(component.sum())
    measures["object_area"] = float(area)
    measures["object_share"] = area / max(int(mask.sum()), 1)
    if area < MIN_AREA or measures["object_share"] < MIN_OBJECT_SHARE:
        return None
    return {
        "colour": _colour(smooth, component & (coverage > 0.8), measures),
        "size": _size(component, measures),
        "shape": _shape(component, measures),
    }


def _largest_component(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The largest 4-connected component of ``mask`` (empty when the mask is)."""
    labels, count = ndimage.label(mask)
    if not count:
        return np.zeros_like(mask)
    sizes = np.bincount(np.asarray(labels).ravel())[1:]
    return np.asarray(labels == int(np.argmax(sizes)) + 1, dtype=bool)


def _colour(
    smooth: _FloatArray, inside: NDArray[np.bool_], measures: dict[str, float]
) -> str | None:
    if not inside.any():
        return None
    hue, chroma, _ = _hsv(smooth[inside])
    angles = np.radians(hue)
    resultant = np.array([np.sum(chroma * np.cos(angles)), np.sum(chroma * np.sin(angles))])
    strength = min(float(np.hypot(*resultant) / max(float(chroma.sum()), 1e-9)), 1.0)
    mean_hue = float(np.degrees(np.arctan2(resultant[1], resultant[0])) % 360.0)
    hue_spread = float(np.degrees(np.sqrt(-2.0 * np.log(max(strength, 1e-12)))))
    median_chroma = float(np.median(chroma))
    measures.update(hue=mean_hue, hue_spread=hue_spread, chroma=median_chroma)
    if median_chroma < 0.25 or hue_spread >= 20.0:
        return None
    name, centre = min(COLOUR_HUES.items(), key=lambda item: _hue_distance(mean_hue, item[1]))
    return name if _hue_distance(mean_hue, centre) <= 25.0 else None


def _hue_distance(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def _size(component: NDArray[np.bool_], measures: dict[str, float]) -> str | None:
    radius = _circumradius(component)
    measures["radius"] = radius
    if radius <= 12.5:
        return "small"
    if radius >= 13.5:
        return "large"
    return None


def _circumradius(component: NDArray[np.bool_]) -> float:
    ys, xs = np.nonzero(component)
    return float(np.max(np.hypot(ys - ys.mean(), xs - xs.mean()))) + 0.5


def _shape(component: NDArray[np.bool_], measures: dict[str, float]) -> str | None:
    ys, xs = np.nonzero(component)
    area = float(len(ys))
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    box = float((bottom - top + 1) * (right - left + 1))
    fill = area / box
    radial = area / (math.pi * _circumradius(component) ** 2)
    middle = (top + bottom) / 2
    upper, lower = float(np.sum(ys < middle)), float(np.sum(ys > middle))
    balance = upper / max(lower, 1.0)
    axis = (bottom - top + 1 + right - left + 1) / 2
    diagonals = [ys + xs, ys - xs]
    diagonal = float(
        np.mean([(d.max() - d.min()) / math.sqrt(2) + math.sqrt(2) for d in diagonals])
    )
    corner = diagonal / axis
    measures.update(fill=fill, radial=radial, balance=balance, corner=corner)
    if balance <= 0.68 and corner < 1.16:
        return "triangle"
    if balance >= 0.75 and corner >= 1.16 and fill >= 0.72:
        return "square"
    if balance >= 0.75 and corner <= 1.11 and radial >= 0.8:
        return "circle"
    return None


def object_column(image: Image.Image) -> float | None:
    """The middle column of the image's object: the mid-point of the leftmost and rightmost
    columns holding a pixel farther than 0.3 (RGB in [0, 1]) from the background (the median
    of the ring the oracle reads it from), inside the frame band. Every world shape is
    symmetric about its centre's column, so this is the centre's x. None without an object."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    depth = edge_depth()
    background = np.median(pixels[(depth > FRAME_WIDTH) & (depth <= FRAME_WIDTH + 3)], axis=0)
    far = (depth > FRAME_WIDTH) & (np.linalg.norm(pixels - background, axis=-1) > 0.3)
    if int(far.sum()) < 20:
        return None
    columns = np.nonzero(far.any(axis=0))[0]
    return float(columns.min() + columns.max() + 1) / 2


def placed(image: Image.Image, style: str) -> bool:
    """Whether the image's object sits where ``style`` puts it (a pixel measure, no model):
    its centre's column (:func:`object_column`) nearer the style's range than the world's own.
    The world's centres are at most ``MAX_OFFSET`` (3) pixels from the image centre, the
    style's ``offset`` ± ``jitter`` (-6 ± 1.5): the boundary is half-way, 3.75 pixels."""
    column = object_column(image)
    if column is None:
        return False
    placement = STYLES[style]
    gap = abs(placement.offset) - MAX_OFFSET - placement.jitter
    return abs(column - (IMAGE_SIZE / 2 + placement.offset)) <= placement.jitter + gap / 2
