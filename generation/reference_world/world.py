"""The reference world: flat shapes on plain backgrounds, drawn from their traits and a seed.

Each image is ``IMAGE_SIZE`` square (the reference pipeline's size) and shows one shape, centred
within a few pixels, on a neutral grey background; a legendary token also has a gold frame along
the image's edge. Its traits are the categories of :data:`RARITY`, the world's rarity table in
the project's format (generation/traits.py), and its caption is :data:`PROMPT_TEMPLATE` filled
with the options' prompts, so a collection can take table and template as they are:

=========== ========================================= =========================================
category    options (prompt)                          how it is drawn
=========== ========================================= =========================================
shape       circle, square, triangle                  upright; the radius is the circumradius
colour      red, green, blue, purple                  hue 0, 120, 225, 285 degrees (± 6)
background  light, dark ("light/dark background")     neutral grey, value 200-235 / 20-55
size        small, large                              circumradius 8-11 / 15-18 pixels
edition     common ("no frame"),                      the background reaches the edge /
            legendary ("gold frame"), weight 1 in 20  a gold band ``FRAME_WIDTH`` pixels wide
=========== ========================================= =========================================

Everything else about an image (its centre, exact radius, hue, saturation, brightness and
background shade) is jitter drawn from the seed, so two tokens with the same traits differ.
Jitter comes from :func:`generation.traits.uniform_below` (SHA-256), not from a library's
random generator, so an image is the same on every machine and numpy version; shapes are
anti-aliased by averaging ``SUPERSAMPLE``² sub-pixel samples.

The options are chosen so that some traits are easy and one is hard for a small diffusion model
at 64 pixels: colour and background are large areas of one value, size is the extent of the
blob, but the shape lives in a few edge and corner pixels. The gold frame is on the edge where
no shape reaches, and no shape colour is near gold, so a legendary can never pass for a common.
"""

from __future__ import annotations

import colorsys
import hashlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from generation.traits import render_prompt, uniform_below, weighted_traits

IMAGE_SIZE = 64
"""Side of every world image in pixels: the reference pipeline's ``REFERENCE_IMAGE_SIZE``."""
FRAME_WIDTH = 4
"""Width in pixels of the legendary's gold frame along each edge."""
SUPERSAMPLE = 4
"""Sub-pixel samples per pixel side used to anti-alias shapes."""
MAX_OFFSET = 3
"""Largest shift in pixels of a shape's centre from the image centre, on each axis."""

SHAPES = ("circle", "square", "triangle")
COLOUR_HUES = {"red": 0.0, "green": 120.0, "blue": 225.0, "purple": 285.0}
"""Each colour's hue in degrees; an image's hue is within ``HUE_JITTER`` of it."""
HUE_JITTER = 6.0
SATURATION = (0.70, 0.90)
VALUE = (0.75, 0.95)
BACKGROUND_VALUES = {"light": (200, 235), "dark": (20, 55)}
"""Each background's grey level range (0-255, all three channels equal)."""
SIZE_RADII = {"small": (8.0, 11.0), "large": (15.0, 18.0)}
"""Each size's circumradius range in pixels (distance from the centre to the farthest point)."""
GOLD_RGB = (212, 168, 38)
"""The legendary frame's colour (hue about 45 degrees); each channel jitters by up to 8."""
GOLD_JITTER = 8

STYLE_PROMPT = "a flat geometric token"
"""The world's style prompt: what every image of it is."""
PROMPT_TEMPLATE = "a {size} {colour} {shape} on a {background}, {edition}"
"""The caption of an image, a prompt template over the categories of :data:`RARITY`."""
RARE_CATEGORY = "edition"
RARE_OPTION = "legendary"


def _options(prompts: Mapping[str, str], weights: Mapping[str, int] | None = None) -> list[Any]:
    return [
        {"name": name, "prompt": prompt, "weight": (weights or {}).get(name, 1)}
        for name, prompt in prompts.items()
    ]


RARITY: dict[str, Any] = {
    "mode": "weighted",
    "categories": [
        {"name": "shape", "verify": True, "options": _options({s: s for s in SHAPES})},
        {"name": "colour", "verify": True, "options": _options({c: c for c in COLOUR_HUES})},
        {
            "name": "background",
            "verify": True,
            "options": _options({b: f"{b} background" for b in BACKGROUND_VALUES}),
        },
        {"name": "size", "verify": True, "options": _options({s: s for s in SIZE_RADII})},
        {
            "name": RARE_CATEGORY,
            "verify": True,
            "options": _options(
                {"common": "no frame", RARE_OPTION: "gold frame"},
                {"common": 19, RARE_OPTION: 1},
            ),
        },
    ],
}
"""The world's rarity table (weighted mode): every category is drawn uniformly except the
edition, where one token in 20 is legendary."""

CATEGORIES: dict[str, tuple[str, ...]] = {
    category["name"]: tuple(option["name"] for option in category["options"])
    for category in RARITY["categories"]
}
"""Category name → its option names, in table order."""


def caption(traits: Mapping[str, str]) -> str:
    """The image's caption: :data:`PROMPT_TEMPLATE` with each category's option prompt."""
    return render_prompt(PROMPT_TEMPLATE, traits, RARITY)


def world_traits(seed: bytes) -> dict[str, str]:
    """A token's traits as a collection using :data:`RARITY` draws them (one in 20 legendary)."""
    return weighted_traits(seed, RARITY)


def balanced_traits(seed: bytes) -> dict[str, str]:
    """Traits with every option of every category equally likely (legendary one in two): the
    draw for training and test sets, where the rare option must be seen as often as the rest."""
    return {
        name: options[uniform_below(seed, f"balanced:{name}", len(options))]
        for name, options in CATEGORIES.items()
    }


def all_traits() -> Iterator[dict[str, str]]:
    """Every combination of the world's options (3 × 4 × 2 × 2 × 2 = 96), in table order."""
    names = list(CATEGORIES)
    for combination in itertools.product(*CATEGORIES.values()):
        yield dict(zip(names, combination, strict=True))


def _check_traits(traits: Mapping[str, str]) -> None:
    if set(traits) != set(CATEGORIES):
        raise ValueError(
            f"world traits need exactly the categories {sorted(CATEGORIES)}, got {sorted(traits)}"
        )
    for name, value in traits.items():
        if value not in CATEGORIES[name]:
            raise ValueError(f"{value!r} is not an option of {name!r} ({list(CATEGORIES[name])})")


def _uniform(seed: bytes, label: str, low: float, high: float) -> float:
    # 53 bits: every value is an exact double, the same on every machine.
    return low + (high - low) * uniform_below(seed, f"world:{label}", 2**53) / 2**53


def _coverage(shape: str, cx: float, cy: float, radius: float) -> NDArray[np.float64]:
    """The fraction of each pixel the shape covers, from SUPERSAMPLE² samples per pixel."""
    steps = (np.arange(IMAGE_SIZE * SUPERSAMPLE, dtype=np.float64) + 0.5) / SUPERSAMPLE
    y, x = np.meshgrid(steps - cy, steps - cx, indexing="ij")
    if shape == "circle":
        inside = x * x + y * y <= radius * radius
    elif shape == "square":
        half = radius / np.sqrt(2.0)
        inside = (np.abs(x) <= half) & (np.abs(y) <= half)
    else:
        # An upright equilateral triangle (apex up; y grows downwards): inside all three edges,
        # each at the inradius (radius / 2) from the centre along its outward normal.
        inside = np.ones_like(x, dtype=bool)
        for angle in (0.0, 2 * np.pi / 3, 4 * np.pi / 3):
            inside &= np.sin(angle) * x + np.cos(angle) * y <= radius / 2
    samples = inside.reshape(IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE)
    return np.asarray(samples.mean(axis=(1, 3)), dtype=np.float64)


def frame_mask() -> NDArray[np.bool_]:
    """True on the pixels of the legendary's frame (the outer ``FRAME_WIDTH`` pixels)."""
    return edge_depth() < FRAME_WIDTH


def edge_depth() -> NDArray[np.int64]:
    """Each pixel's distance in whole pixels from the nearest image edge (0 on the edge)."""
    index = np.arange(IMAGE_SIZE)
    depth = np.minimum(index, IMAGE_SIZE - 1 - index)
    return np.asarray(np.minimum.outer(depth, depth), dtype=np.int64)


@dataclass(frozen=True)
class Placement:
    """A style the world's models never drew: the shape sits off the image's centre.

    The world's own shapes are centred within ``MAX_OFFSET`` pixels; a placement moves the
    centre by ``offset`` pixels on both axes (negative: up and left) with its own, smaller
    jitter, so a styled shape's centre and an unstyled one's never overlap. The oracle reads
    every trait of a placed image as of a centred one (it finds the object wherever it is, and
    the largest shape still stays clear of the ring it takes the background from; tests/
    test_lora.py checks all 96 combinations), and the world's VAE, being convolutional, draws a
    shape anywhere, which it does not do for new colours (docs/lora.md).
    """

    offset: float
    """Pixels from the image centre to the shape's mean centre, on each axis."""
    jitter: float
    """Largest shift in pixels of the centre from ``offset``, on each axis."""
    prompt: str
    """The style's prompt: what a CLIP that learned the style (``ClipTraining.styles``) scores
    high on images in it and low on the world's own; a styled collection's style prompt."""


CENTRE_PROMPT = "a flat geometric token set in the middle"
"""The world's own placement named as a style prompt is: what a CLIP that learned styles
(``ClipTraining.styles``) is taught as the contrast of each style's prompt."""

STYLES: dict[str, Placement] = {
    "top-left": Placement(
        offset=-6.0, jitter=1.5, prompt="a flat geometric token set up and to the left"
    )
}
"""Styles :func:`draw` can draw besides the world's own (``style=None``): what a LoRA adapter
teaches the world's diffusion model (generation/reference_world/lora_training.py)."""


def draw(traits: Mapping[str, str], seed: bytes, *, style: str | None = None) -> Image.Image:
    """The world image of a token with ``traits``, its jitter drawn from ``seed`` (any bytes),
    in the world's own style or in one of :data:`STYLES`.

    Deterministic: the same traits, seed and style give the same pixels everywhere; a styled
    image has the same colour, size and frame as the unstyled one of the same seed.
    """
    _check_traits(traits)
    if style is not None and style not in STYLES:
        raise ValueError(f"style {style!r} is not one of {sorted(STYLES)}")
    seed = bytes(seed)
    grey = round(_uniform(seed, "background", *BACKGROUND_VALUES[traits["background"]]))
    hue = COLOUR_HUES[traits["colour"]] + _uniform(seed, "hue", -HUE_JITTER, HUE_JITTER)
    rgb = colorsys.hsv_to_rgb(
        (hue % 360.0) / 360.0,
        _uniform(seed, "saturation", *SATURATION),
        _uniform(seed, "value", *VALUE),
    )
    radius = _uniform(seed, "radius", *SIZE_RADII[traits["size"]])
    centre = IMAGE_SIZE / 2
    # The world's own offsets stay whole numbers: the same arithmetic, the same pixels.
    spread: float = MAX_OFFSET
    if style is not None:
        centre, spread = centre + STYLES[style].offset, STYLES[style].jitter
    cx = centre + _uniform(seed, "x", -spread, spread)
    cy = centre + _uniform(seed, "y", -spread, spread)
    alpha = _coverage(traits["shape"], cx, cy, radius)[..., None]
    pixels = (1.0 - alpha) * (grey / 255.0) + alpha * np.asarray(rgb)
    if traits[RARE_CATEGORY] == RARE_OPTION:
        gold = [
            channel + round(_uniform(seed, f"gold:{i}", -GOLD_JITTER, GOLD_JITTER))
            for i, channel in enumerate(GOLD_RGB)
        ]
        pixels[frame_mask()] = np.asarray(gold) / 255.0
    return Image.fromarray(np.round(pixels * 255.0).astype(np.uint8), mode="RGB")


@dataclass(frozen=True)
class WorldImage:
    """One image of the world with the traits it was drawn from and its caption."""

    traits: dict[str, str]
    caption: str
    image: Image.Image


def item_seed(seed: int, index: int) -> bytes:
    """The seed of item ``index`` of a data set drawn with ``seed``."""
    return hashlib.sha256(f"reference-world:{seed}:{index}".encode()).digest()


def dataset(
    count: int, seed: int, *, balanced: bool = True, style: str | None = None
) -> Iterator[WorldImage]:
    """``count`` images drawn with ``seed``: traits from :func:`balanced_traits` (default) or
    :func:`world_traits` (the collection's odds), each image from its own item seed, in the
    world's style or in ``style`` (one of :data:`STYLES`; the captions are the same)."""
    for index in range(count):
        item = item_seed(seed, index)
        traits = balanced_traits(item) if balanced else world_traits(item)
        yield WorldImage(traits, caption(traits), draw(traits, item, style=style))
