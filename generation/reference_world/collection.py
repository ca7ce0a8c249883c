"""The reference world as a collection: what ``make run`` deploys (issue 16).

The collection renders with the world's trained diffusion model and checks every render with
the world's trained CLIP (both in ``settings.REFERENCE_WORLD_DIR``, committed with the code;
docs/reference-world.md), takes the world's rarity table, prompt template and style prompt as
they are, verifies every category, compares each render with a few world images
(:func:`write_style_images`, in ``REFERENCE_WORLD_DIR/style``) and with the earlier tokens.

:func:`world_collection_fields` gives the collection's fields (``chain.deployment`` makes a
``CollectionSpec`` of them, ``calibrate_gate --reference-world`` an unsaved collection);
:data:`GATE` holds the thresholds, proposed by ``calibrate_gate`` on these models (its comment
says with which command and what it printed).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.reference_world.world import (
    CATEGORIES,
    IMAGE_SIZE,
    PROMPT_TEMPLATE,
    RARITY,
    STYLE_PROMPT,
    draw,
)

SLUG = "reference"
NAME = "Reference World"
DESCRIPTION = (
    "Flat shapes rendered on demand by the reference world's small trained models: a diffusion "
    "model and the gate's CLIP, trained on this project's synthetic world of shapes, whose "
    "traits a pixel oracle reads (docs/reference-world.md). Every image was checked by the "
    "CLIP gate for its style and for each of its traits."
)

FINGERPRINTS = {
    "diffusion": "sha256:",
    "clip": "sha256:62605fa953710101f85b00a29c471719bf0497ac6cd97ffceebf032a9fbad4aa",
}
"""The fingerprints (generation.reference_models.model_fingerprint) of the committed weights in
``models/reference-world`` that :data:`GATE` was calibrated on; their training records
(``world_training.json``) hold the same, and a test checks both against the files."""

STYLE_IMAGE_COUNT = 16
"""How many style reference images :func:`write_style_images` draws.

Measured with the world's CLIP (``sha256:62605fa9…``) on 200 drawn world images (seed 1616)
and the off-style images of tests/test_reference_world_gate.py (noise, gradients, stripes,
a checkerboard, text): with 8 common images only, legendaries scored far below commons
against their mean (median 0.427 against 0.641, least 0.241), so a threshold would have
rejected the rare trait first; with the edition balanced, the least world image scored 0.431
(8 images), 0.439 (12), 0.506 (16) and 0.517 (24), the most off-style one 0.548, 0.486, 0.487
and 0.474 (a sky-like gradient or coloured stripes). A collection may hold 16
(config_limits), 11 KB here."""


def style_image_traits(index: int) -> dict[str, str]:
    """The traits of style image ``index``: background, size and edition walk all 8 of their
    combinations every 8 images, shape and colour cycle, so 16 images hold every shape, every
    colour and as many legendaries as commons (the mean embedding must not lean
    towards one edition: the gate would then reject the other first)."""
    shapes, colours = CATEGORIES["shape"], CATEGORIES["colour"]
    backgrounds, sizes = CATEGORIES["background"], CATEGORIES["size"]
    editions = CATEGORIES["edition"]
    return {
        "shape": shapes[index % len(shapes)],
        "colour": colours[index % len(colours)],
        "background": backgrounds[index % len(backgrounds)],
        "size": sizes[(index // 2) % len(sizes)],
        "edition": editions[(index // 4) % len(editions)],
    }


def style_image_seed(index: int) -> bytes:
    """Style image ``index``'s jitter seed: ``sha256(utf8(f"reference-world:style:{index}"))``."""
    return hashlib.sha256(f"reference-world:style:{index}".encode()).digest()


def style_image_name(index: int) -> str:
    traits = style_image_traits(index)
    parts = [traits[name] for name in ("size", "colour", "shape", "background", "edition")]
    return f"{index:02d}-{'-'.join(parts)}.png"


def style_image_paths(root: Path) -> list[Path]:
    """Where :func:`write_style_images` puts the images under the world folder ``root``."""
    return [Path(root) / "style" / style_image_name(i) for i in range(STYLE_IMAGE_COUNT)]


def write_style_images(root: Path) -> list[Path]:
    """Draw the style reference images into ``root/style`` (replacing what is there under
    their names) and return their paths. Deterministic: world images are pure functions of
    traits and seed, and the PNG encoding writes no metadata (same pixels, same bytes)."""
    from generation.rendering import png_bytes

    paths = style_image_paths(root)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(paths):
        path.write_bytes(png_bytes(draw(style_image_traits(index), style_image_seed(index))))
    return paths


@dataclass(frozen=True)
class WorldGate:
    """The render settings and gate thresholds of the world collection."""

    steps: int
    guidance: float
    max_attempts: int
    clip_threshold: float
    trait_margin: float
    style_images_threshold: float
    uniqueness_threshold: float


GATE = WorldGate(
    steps=20,
    guidance=4.0,
    max_attempts=4,
    clip_threshold=0.318767,
    trait_margin=0.0,
    style_images_threshold=0.240544,
    uniqueness_threshold=0.997062,
)
"""Placeholder figures until calibrated (see the module doc)."""


def world_collection_fields(root: Path, gate: WorldGate = GATE) -> dict[str, Any]:
    """The world collection's fields (those of ``chain.deployment.CollectionSpec`` and of
    ``generation.models.Collection``), its models and style images under ``root``."""
    root = Path(root)
    return {
        "slug": SLUG,
        "name": NAME,
        "description": DESCRIPTION,
        "model_dir": str(root / "diffusion"),
        "clip_dir": str(root / "clip"),
        "prompt_template": PROMPT_TEMPLATE,
        "negative_prompt": "",
        "style_prompt": STYLE_PROMPT,
        "rarity": copy.deepcopy(RARITY),
        "steps": gate.steps,
        "guidance": gate.guidance,
        "max_attempts": gate.max_attempts,
        "clip_threshold": gate.clip_threshold,
        "trait_margin": gate.trait_margin,
        "style_images": [str(path) for path in style_image_paths(root)],
        "style_images_threshold": gate.style_images_threshold,
        "uniqueness_threshold": gate.uniqueness_threshold,
        "width": IMAGE_SIZE,
        "height": IMAGE_SIZE,
    }
