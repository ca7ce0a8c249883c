"""Samples of the world's diffusion model, labelled by what the oracle reads in them.

The gate's CLIP judges generated images, which are softer than the world's drawn ones; training
it on such samples (labelled by the pixel oracle, never by the caption they were drawn from)
teaches it what the gate will see. Rendered by the project's own renderer on one CPU thread
with one generator per image, so the same model and seed give the same list on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from generation.reference_world.oracle import read_traits
from generation.reference_world.world import (
    CATEGORIES,
    IMAGE_SIZE,
    WorldImage,
    caption,
    dataset,
)
from generation.torch_threads import one_torch_thread

if TYPE_CHECKING:
    from generation.rendering import Renderer


def render_captions(
    renderer: Renderer,
    captions: Sequence[str],
    image_seed: Callable[[int], bytes],
    *,
    steps: int,
    guidance: float,
    batch_size: int = 16,
) -> list[Image.Image]:
    """Render ``captions`` with the project's ``renderer`` (empty negative prompt, the world's
    image size), caption ``i`` with the image seed
    ``image_seed(i)`` at attempt 0, in batches of ``batch_size`` on one CPU thread: the same
    images every run."""
    from generation.rendering import RenderParams

    params = RenderParams(
        prompt="",
        negative_prompt="",
        steps=steps,
        guidance=guidance,
        width=IMAGE_SIZE,
        height=IMAGE_SIZE,
    )
    images: list[Image.Image] = []
    with one_torch_thread():
        for start in range(0, len(captions), batch_size):
            requests = [
                (renderer.prompt_embeddings(text, "", guidance), image_seed(start + i), 0)
                for i, text in enumerate(captions[start : start + batch_size])
            ]
            images += renderer.render_many(params, requests)
    return images


def oracle_read_samples(
    model_dir: Path,
    count: int,
    seed: int,
    *,
    steps: int = 20,
    guidance: float = 4.0,
    batch_size: int = 16,
    adapters: Sequence[tuple[Path, float]] = (),
) -> list[tuple[dict[str, str | None], Image.Image]]:
    """``count`` samples of the diffusion model at ``model_dir`` from the captions of world
    traits drawn with ``seed`` (balanced), each with what the oracle reads in it (``None`` in a
    category it cannot tell), not with the caption it was drawn from. Rendered by the project's
    renderer, one CPU thread, one generator per image (the image seed
    ``b"clip-sample:<seed>:<i>"``), so the list is the same every run. ``adapters``: LoRA
    files and scales applied to the model first (:func:`generation.lora.apply_adapters`)."""
    from generation.lora import apply_adapters
    from generation.rendering import Renderer

    renderer = Renderer(Path(model_dir), device="cpu")
    if adapters:
        apply_adapters(renderer.pipe, list(adapters))
    images = render_captions(
        renderer,
        [item.caption for item in dataset(count, seed)],
        lambda i: f"clip-sample:{seed}:{i}".encode(),
        steps=steps,
        guidance=guidance,
        batch_size=batch_size,
    )
    return [(dict(read_traits(image).traits), image) for image in images]


def oracle_labelled_samples(
    model_dir: Path,
    count: int,
    seed: int,
    *,
    steps: int = 20,
    guidance: float = 4.0,
    batch_size: int = 16,
) -> list[WorldImage]:
    """:func:`oracle_read_samples` labelled with what the oracle reads: a sample that drew a
    square for "circle" is a square. Samples in which the oracle cannot read every trait are
    left out, so fewer than ``count`` may come back."""
    return complete_readings(
        oracle_read_samples(
            model_dir, count, seed, steps=steps, guidance=guidance, batch_size=batch_size
        )
    )


def complete_readings(
    samples: Sequence[tuple[dict[str, str | None], Image.Image]],
) -> list[WorldImage]:
    """The samples in which the oracle read every category, as world images of those traits."""
    labelled: list[WorldImage] = []
    for read, image in samples:
        if all(read.get(name) is not None for name in CATEGORIES):
            traits = {name: str(read[name]) for name in CATEGORIES}
            labelled.append(WorldImage(traits, caption(traits), image))
    return labelled


def misshapen_readings(
    samples: Sequence[tuple[dict[str, str | None], Image.Image]],
) -> list[tuple[dict[str, str], Image.Image]]:
    """The samples the oracle reads in every category but shape: the in-between drawings
    (a rounded square, a lopsided triangle) that the gate must refuse, each with the traits the
    oracle could read."""
    misshapen = []
    for read, image in samples:
        known = {name: str(value) for name, value in read.items() if value is not None}
        if read.get("shape") is None and set(known) == set(CATEGORIES) - {"shape"}:
            misshapen.append((known, image))
    return misshapen
