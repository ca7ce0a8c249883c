"""Samples of the world's diffusion model, labelled by what the oracle reads in them.

The gate's CLIP judges generated images, which are softer than the world's drawn ones; training
it on such samples (labelled by the pixel oracle, never by the caption they were drawn from)
teaches it what the gate will see. Rendered by the project's own renderer on one CPU thread
with one generator per image, so the same model and seed give the same list on every run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from generation.reference_world.oracle import read_traits
from generation.reference_world.world import (
    CATEGORIES,
    IMAGE_SIZE,
    WorldImage,
    caption,
    dataset,
)


def oracle_labelled_samples(
    model_dir: Path,
    count: int,
    seed: int,
    *,
    steps: int = 20,
    guidance: float = 4.0,
    batch_size: int = 16,
) -> list[WorldImage]:
    """``count`` samples of the diffusion model at ``model_dir`` from the captions of world
    traits drawn with ``seed`` (balanced), each labelled with what the oracle reads in it, not
    with the caption it was drawn from: a sample that drew a square for "circle" is a square.
    Samples in which the oracle cannot read every trait are left out, so fewer than ``count``
    may come back. Rendered by the project's renderer, one CPU thread, one generator per image
    (the image seed ``b"clip-sample:<seed>:<i>"``), so the list is the same every run."""
    from generation.rendering import Renderer, RenderParams

    renderer = Renderer(Path(model_dir), device="cpu")
    items = list(dataset(count, seed))
    params = RenderParams(
        prompt="",
        negative_prompt="",
        steps=steps,
        guidance=guidance,
        width=IMAGE_SIZE,
        height=IMAGE_SIZE,
    )
    labelled: list[WorldImage] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for start in range(0, count, batch_size):
            chunk = items[start : start + batch_size]
            requests = [
                (
                    renderer.prompt_embeddings(item.caption, "", guidance),
                    f"clip-sample:{seed}:{start + i}".encode(),
                    0,
                )
                for i, item in enumerate(chunk)
            ]
            for image in renderer.render_many(params, requests):
                read = read_traits(image).traits
                if all(read.get(name) is not None for name in CATEGORIES):
                    traits = {name: str(read[name]) for name in CATEGORIES}
                    labelled.append(WorldImage(traits, caption(traits), image))
    finally:
        torch.set_num_threads(threads)
    return labelled
