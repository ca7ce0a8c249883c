"""What the pipeline, the review and the verifier need from a renderer and a CLIP scorer.

``rendering.Renderer`` and ``clip_gate.ClipScorer`` are the real ones; the batcher, the review's
cache-only stand-in and its weightless ``RenderKey`` each provide a part. Code that takes one of
these says which part it uses, so a stand-in is checked against it instead of being ``Any``.
Importing this module loads neither torch nor a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from generation.rendering import RenderParams


@runtime_checkable
class RendersImages(Protocol):
    """Turns (params, seed, attempt) into an image: a renderer, a batcher, a cache lookup."""

    def render(self, params: RenderParams, seed: bytes, attempt: int) -> Image.Image: ...


class RenderIdentity(Protocol):
    """What a render's cache key and provenance record read from its renderer."""

    @property
    def fingerprint(self) -> str: ...

    # torch.dtype on a loaded renderer, its str() on a weightless key: read as str(dtype)
    @property
    def dtype(self) -> object: ...

    @property
    def device(self) -> str: ...

    def scheduler_for(self, params: RenderParams) -> str: ...

    # what the latency levers add to the model block ({} when none; generation/render_levers.py)
    @property
    def lever_record(self) -> dict[str, Any]: ...


class ImageRenderer(RendersImages, RenderIdentity, Protocol):
    """A loaded diffusion model: renders, and says what it is for the provenance."""

    @property
    def format(self) -> str: ...  # "diffusers" or "single-file"


class ImageScorer(Protocol):
    """A loaded CLIP model, as the gate, the review and the warm-up use it."""

    @property
    def fingerprint(self) -> str: ...

    def image_embedding(self, image: Image.Image) -> np.ndarray:
        """The image's embedding: 1-D float32, L2-normalised."""
        ...

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """An (n, d) float32 matrix, one L2-normalised row per text."""
        ...
