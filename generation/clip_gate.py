"""The CLIP gate: score a rendered image against text with an open_clip model.

The model is loaded from a local folder written by ``open_clip.push_to_hf_hub.save_for_hf``
(``open_clip_config.json`` plus weights), through ``open_clip``'s ``local-dir:`` schema, so the
same code loads the reference model and real checkpoints saved that way. Nothing is fetched.

The gate (:func:`check_image`) runs, in order:

1. **Blank** — an image whose pixels spread less than ``blank_std`` around their mean colour
   (:func:`pixel_std`: the root mean square of the three RGB channels' standard deviations,
   0–255 scale) fails at once (a safety filter's black output, a flat fill of any colour, a
   faint texture on one); nothing else is computed for it.
2. **Style** — cosine similarity of the image to the style prompt at or above its threshold.
3. **Traits** — for each :class:`TraitCheck`, zero-shot over the category's options: the
   assigned option must rank strictly first, leading the best other option by at least
   ``trait_margin``.
4. **Uniqueness** (:func:`check_uniqueness`), either or both of:

   - **near duplicates** — the smallest near-duplicate distance to the earlier tokens' image
     signatures (:mod:`generation.near_duplicates`: pixels, forgiving shifts of up to 2
     pixels, re-encoding, noise and a uniform brightness offset) must be above
     ``near_duplicate_threshold``. This is the check that tells a copy from an honest token
     with the same traits;
   - **CLIP embedding** (kept for collections that froze it) — the largest cosine similarity to
     the earlier tokens' image embeddings must be below ``uniqueness_threshold``. A CLIP
     trained to read traits puts two honest images with the same traits as close as an image
     and its copy, so this check either passes copies or rejects honest tokens.

Every score is rounded to :data:`SCORE_DECIMALS` decimals *before* it is compared, so the
decision can be re-derived from the recorded numbers alone.

Embeddings and signatures are stored by the caller as raw float32 little-endian bytes
(:func:`embedding_to_bytes`, :func:`embedding_from_bytes`, :func:`stack_embeddings`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from generation import near_duplicates
from generation.model_pool import POOL, module_bytes
from generation.protocols import ImageScorer
from generation.reference_models import model_fingerprint

SCORE_DECIMALS = 6
#: How many prompts' text embeddings one scorer keeps (least recently used are dropped).
TEXT_CACHE_SIZE = 4096
#: Storage format of an embedding: float32, little-endian, no header (4 bytes per dimension).
EMBEDDING_DTYPE = np.dtype("<f4")


def _round(value: float) -> float:
    return round(float(value), SCORE_DECIMALS)


class ClipScorer:
    """A loaded open_clip model, its preprocessing and tokenizer; load once per process.

    ``text_encoder_calls`` counts the text encoder's forward passes (one per prompt not yet in
    this scorer's cache); ``image_encoder_calls`` counts image forward passes.
    """

    def __init__(self, clip_dir: Path, device: str | None = None) -> None:
        import open_clip

        clip_dir = Path(clip_dir)
        if not (clip_dir / "open_clip_config.json").is_file():
            raise FileNotFoundError(
                f"{clip_dir} has no open_clip_config.json; expected a folder written by "
                "open_clip's save_for_hf (did you run `manage.py build_reference_models`?)"
            )
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.clip_dir = clip_dir
        self.device = device
        self.fingerprint = model_fingerprint(clip_dir)
        name = "local-dir:" + str(clip_dir)
        # float32 on every device: scores are recorded in provenance and compared to
        # thresholds, and the CLIP forward pass is cheap next to the diffusion model.
        model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(name)
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._text_lock = threading.Lock()
        self.text_encoder_calls = 0
        self.image_encoder_calls = 0

    def memory_bytes(self) -> int:
        """Bytes of the CLIP model's weights and buffers."""
        return module_bytes([self.model])

    def image_embedding(self, image: Image.Image) -> np.ndarray:
        """The image's embedding: 1-D float32, L2-normalised."""
        with torch.inference_mode():
            pixels = self.preprocess(image.convert("RGB")).unsqueeze(0).to(self.device)
            features = F.normalize(self.model.encode_image(pixels).float(), dim=-1)
        self.image_encoder_calls += 1
        return np.asarray(features[0].cpu().numpy(), dtype=np.float32)

    def _encode_text(self, text: str) -> np.ndarray:
        with torch.inference_mode():
            tokens = self.tokenizer([text]).to(self.device)
            features = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
        self.text_encoder_calls += 1
        vector = np.array(features[0].cpu().numpy(), dtype=np.float32)  # a copy of its own
        vector.flags.writeable = False  # shared through the cache
        return vector

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` as an (n, d) float32 matrix, rows L2-normalised.

        Each prompt is encoded once per scorer and cached (prompts repeat across tokens). A
        prompt is encoded alone, never batched with others, so its embedding does not depend
        on which prompts happened to be encoded with it the first time.
        """
        texts = list(texts)
        rows = []
        with self._text_lock:
            for text in texts:
                vector = self._text_cache.get(text)
                if vector is None:
                    vector = self._encode_text(text)
                    self._text_cache[text] = vector
                    if len(self._text_cache) > TEXT_CACHE_SIZE:
                        self._text_cache.popitem(last=False)
                else:
                    self._text_cache.move_to_end(text)
                rows.append(vector)
        if not rows:
            dim = int(self.model.text_projection.shape[-1]) if self._has_projection() else 0
            return np.empty((0, dim), dtype=np.float32)
        return np.stack(rows).astype(np.float32, copy=False)

    def _has_projection(self) -> bool:
        return getattr(self.model, "text_projection", None) is not None

    def score(self, image: Image.Image, texts: list[str]) -> list[float]:
        """Cosine similarity of ``image`` to each of ``texts``, rounded to 6 decimals."""
        if not texts:
            return []
        similarities = self.text_embeddings(texts) @ self.image_embedding(image)
        return [_round(s) for s in similarities]


def get_scorer(clip_dir: Path, device: str | None = None) -> ClipScorer:
    """Return this process's ``ClipScorer`` for ``clip_dir``: from the warm pool
    (generation/model_pool.py), loaded on a miss."""
    key = (Path(clip_dir).resolve(), device)
    return POOL.get("clip", ("clip", *key), lambda: ClipScorer(key[0], device))


@dataclass
class TraitCheck:
    """One category CLIP must verify: ``options`` maps each option's name to its prompt text."""

    category: str
    assigned: str
    options: dict[str, str]


@dataclass
class GateResult:
    """The gate's verdict. ``scores`` and ``thresholds`` are JSON-able dicts of floats.

    ``embedding`` is the image's CLIP embedding (None for a blank image, which is not
    embedded) for the caller to store for later uniqueness checks; ``pixel_std`` is the
    measured spread of the pixels around their mean colour (:func:`pixel_std`, 0–255),
    recorded outside ``scores`` so that a normal
    image's ``scores`` keep the keys they had before the blank check existed. ``signature`` is
    the image's near-duplicate signature (:func:`generation.near_duplicates.signature`; None
    for a blank image), for the caller to store beside the embedding.
    """

    passed: bool
    scores: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    embedding: np.ndarray | None = None
    pixel_std: float | None = None
    signature: np.ndarray | None = None


def pixel_std(image: Image.Image) -> float:
    """How far ``image``'s pixels spread around their mean colour, on the 0–255 scale: the root
    mean square of its RGB channels' standard deviations, each over the pixels.

    Each channel is measured around its own mean, so a flat fill of any colour scores 0 (the
    spread of all channel values together, which this replaced, scored a flat (200, 40, 40)
    red 75). It is never above that older measure, so an image blank to it is blank to this.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    return float(np.sqrt(pixels.var(axis=0).mean()))


def check_image(
    scorer: ImageScorer,
    image: Image.Image,
    style_prompt: str,
    style_threshold: float,
    *,
    traits: Sequence[TraitCheck] = (),
    trait_margin: float = 0.0,
    earlier: np.ndarray | None = None,
    uniqueness_threshold: float | None = None,
    style_reference: np.ndarray | None = None,
    style_reference_threshold: float | None = None,
    blank_std: float = 2.0,
    earlier_signatures: np.ndarray | None = None,
    near_duplicate_threshold: float | None = None,
) -> GateResult:
    """Run the gate (blank, style, traits, uniqueness; see the module docstring) on ``image``.

    ``earlier`` and ``earlier_signatures`` are the collection's earlier tokens' image
    embeddings and near-duplicate signatures (see :func:`check_uniqueness`). All failing checks
    after the blank one are reported, each with its own reason.
    """
    std = pixel_std(image)
    if std < blank_std:
        return GateResult(
            passed=False,
            scores={"blank_std": _round(std)},
            thresholds={"blank_std": _round(blank_std)},
            reasons=[f"blank or near-constant image (spread around its mean colour {std:.6f})"],
            pixel_std=std,
        )

    for check in traits:
        if len(check.options) < 2:
            raise ValueError(
                f"trait category {check.category!r} needs at least two options to be "
                f"verified by CLIP, got {sorted(check.options)}"
            )
        if check.assigned not in check.options:
            raise ValueError(
                f"trait category {check.category!r}: assigned option {check.assigned!r} "
                f"is not one of {sorted(check.options)}"
            )

    embedding = scorer.image_embedding(image)
    prompts = [style_prompt] + [p for check in traits for p in check.options.values()]
    similarities = [_round(s) for s in scorer.text_embeddings(prompts) @ embedding]

    scores: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    reasons: list[str] = []

    style_score, style_threshold = similarities[0], _round(style_threshold)
    scores["style"], thresholds["style"] = style_score, style_threshold
    if style_score < style_threshold:
        reasons.append(
            f"style score {style_score:.6f} is below the threshold {style_threshold:.6f} "
            f"for {style_prompt!r}"
        )

    margin_threshold = _round(trait_margin)
    offset = 1
    for check in traits:
        names = list(check.options)
        option_scores = dict(zip(names, similarities[offset : offset + len(names)], strict=True))
        offset += len(names)
        assigned = option_scores[check.assigned]
        # Best other option; ties between others go to the first in the options' order.
        rival, rival_score = max(
            ((n, s) for n, s in option_scores.items() if n != check.assigned),
            key=lambda item: item[1],
        )
        margin = _round(assigned - rival_score)
        key = f"trait:{check.category}"
        scores[key], scores[f"{key}:margin"] = assigned, margin
        thresholds[f"{key}:margin"] = margin_threshold
        if margin <= 0:
            reasons.append(
                f"trait {check.category!r}: assigned {check.assigned!r} scores {assigned:.6f} "
                f"but {rival!r} ranks first with {rival_score:.6f}"
            )
        elif margin < margin_threshold:
            reasons.append(
                f"trait {check.category!r}: assigned {check.assigned!r} ranks first with "
                f"{assigned:.6f} but leads {rival!r} ({rival_score:.6f}) by {margin:.6f}, "
                f"below the margin {margin_threshold:.6f}"
            )

    if style_reference is not None and style_reference_threshold is not None:
        # the collection's reference images, as one normalised mean embedding
        similarity = _round(float(np.asarray(style_reference, dtype=np.float32) @ embedding))
        limit = _round(style_reference_threshold)
        scores["style_images"], thresholds["style_images"] = similarity, limit
        if similarity < limit:
            reasons.append(
                f"style images: cosine similarity {similarity:.6f} to the collection's reference "
                f"images is below the threshold {limit:.6f}"
            )

    result = GateResult(
        passed=not reasons,
        scores=scores,
        thresholds=thresholds,
        reasons=reasons,
        embedding=embedding,
        pixel_std=std,
        signature=near_duplicates.signature(image),
    )
    check_uniqueness(
        result,
        image,
        earlier=earlier,
        uniqueness_threshold=uniqueness_threshold,
        earlier_signatures=earlier_signatures,
        near_duplicate_threshold=near_duplicate_threshold,
    )
    return result


def check_uniqueness(
    result: GateResult,
    image: Image.Image,
    *,
    earlier: np.ndarray | None = None,
    uniqueness_threshold: float | None = None,
    earlier_signatures: np.ndarray | None = None,
    near_duplicate_threshold: float | None = None,
    near_duplicate_min: float | None = None,
) -> None:
    """Add the uniqueness checks' scores, thresholds and reasons to ``result`` (in place).

    Separate from :func:`check_image` so that the pipeline can run it again on a fresh list of
    earlier tokens under the collection's lock (generation/pipeline.py) without scoring the
    image again. A blank image (no embedding) is left as it is.

    - ``earlier_signatures``: an (n, ``near_duplicates.SIGNATURE_SIZE``) matrix of the earlier
      tokens' signatures; with rows and ``near_duplicate_threshold`` given, the smallest
      near-duplicate distance (``near_duplicate_min``) must be above the threshold. A caller
      that has measured that distance already (generation/uniqueness.py SignatureDistances)
      passes it as ``near_duplicate_min`` instead (None: no earlier token).
    - ``earlier``: an (n, d) float32 matrix of the earlier tokens' normalised CLIP embeddings
      (e.g. from :func:`stack_embeddings`); with rows and ``uniqueness_threshold`` given, the
      largest cosine similarity (``uniqueness_max``) must be below the threshold.
    """
    embedding = result.embedding
    if embedding is None:
        return
    scores, thresholds, reasons = result.scores, result.thresholds, result.reasons
    for key in ("uniqueness_max", "near_duplicate_min"):
        if key in thresholds:  # run again: the fresh list replaces the earlier verdict
            raise ValueError(f"the gate result already has a {key} verdict")
    if earlier is not None and uniqueness_threshold is not None:
        earlier = np.asarray(earlier, dtype=np.float32)
        if earlier.size:
            if earlier.ndim != 2 or earlier.shape[1] != embedding.shape[0]:
                raise ValueError(
                    f"earlier embeddings must be an (n, {embedding.shape[0]}) matrix, "
                    f"got shape {earlier.shape}"
                )
            nearest = _round(np.max(earlier @ embedding))
            limit = _round(uniqueness_threshold)
            scores["uniqueness_max"], thresholds["uniqueness_max"] = nearest, limit
            if nearest >= limit:
                reasons.append(
                    f"uniqueness: cosine similarity {nearest:.6f} to an earlier token's image "
                    f"is not below the threshold {limit:.6f}"
                )
    if earlier_signatures is not None and near_duplicate_min is not None:
        raise ValueError("give the earlier signatures or the distance measured, not both")
    if near_duplicate_threshold is not None:
        distance = near_duplicate_min
        if earlier_signatures is not None:
            distance = near_duplicates.nearest_distance(image, earlier_signatures)
        if distance is not None:
            limit = _round(near_duplicate_threshold)
            scores["near_duplicate_min"], thresholds["near_duplicate_min"] = distance, limit
            if distance <= limit:
                reasons.append(
                    f"uniqueness: near-duplicate distance {distance:.6f} to an earlier token's "
                    f"image is not above the threshold {limit:.6f}"
                )
    result.passed = not reasons


def embedding_to_bytes(v: np.ndarray) -> bytes:
    """Serialise a 1-D embedding as float32 little-endian bytes (4 per dimension, no header)."""
    v = np.asarray(v)
    if v.ndim != 1:
        raise ValueError(f"an embedding is 1-D, got shape {v.shape}")
    return v.astype(EMBEDDING_DTYPE, copy=False).tobytes()


def embedding_from_bytes(b: bytes) -> np.ndarray:
    """Read back :func:`embedding_to_bytes`' output as a writable, native float32 1-D array."""
    if len(b) % EMBEDDING_DTYPE.itemsize:
        raise ValueError(f"{len(b)} bytes is not a whole number of float32 values")
    return np.frombuffer(b, dtype=EMBEDDING_DTYPE).astype(np.float32)


def stack_embeddings(blobs: Iterable[bytes]) -> np.ndarray:
    """Stack stored embeddings into the (n, d) float32 matrix :func:`check_image` takes.

    No blobs give an empty (0, 0) matrix, which the gate treats as "no earlier tokens".
    """
    rows = [embedding_from_bytes(b) for b in blobs]
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    dims = {r.shape[0] for r in rows}
    if len(dims) != 1:
        raise ValueError(f"stored embeddings have different dimensions: {sorted(dims)}")
    return np.stack(rows)


def reference_embedding(scorer: ImageScorer, paths: Sequence[Path]) -> np.ndarray:
    """The normalised mean of the reference images' embeddings (the style's centre)."""
    vectors = []
    for path in paths:
        with Image.open(path) as image:
            vectors.append(scorer.image_embedding(image.convert("RGB")))
    mean = np.mean(np.stack(vectors), axis=0)
    return np.asarray(mean / np.linalg.norm(mean), dtype=np.float32)
