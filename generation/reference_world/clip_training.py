"""Train the gate's open_clip model on the reference world, and measure it as the gate uses it.

A small CLIP (image tower: ViT, width 64, 3 layers, 8-pixel patches; text tower: width 32, 2
layers; 32-dimensional embeddings) is initialised through open_clip's factory and trained on
world images with texts that describe them: the full caption, one option's prompt alone (what
the gate's trait checks score, e.g. ``"circle"`` or ``"gold frame"``), or the style prompt.
Several texts in a batch may be true of one image (``"circle"`` of every circle), so the loss is
CLIP's symmetric cross-entropy with every true pair as a target, spread evenly.

Deterministic on the CPU: one torch thread, the model's weights from ``torch.manual_seed``,
batches and texts from a seeded ``torch.Generator``, the images from the world's own seeds. With
the same seed and library versions two runs give byte-identical weights (torch does not promise
the same across CPUs or thread counts; that is why training pins one thread).

The model is saved with :func:`generation.reference_models.save_clip_model`, in the layout the
gate loads (``open_clip.create_model_and_transforms("local-dir:<dir>")``), and measured through
:class:`generation.clip_gate.ClipScorer` on held-out world images.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from generation.clip_gate import ClipScorer
from generation.reference_models import (
    CLIP_MODEL_CFG,
    CONTEXT_LENGTH,
    model_fingerprint,
    new_clip_model,
    save_clip_model,
)
from generation.reference_world.world import (
    CATEGORIES,
    CENTRE_PROMPT,
    IMAGE_SIZE,
    RARITY,
    STYLE_PROMPT,
    STYLES,
    WorldImage,
    all_traits,
    caption,
    dataset,
)
from generation.torch_threads import one_torch_thread

WORLD_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "head_width": 32, "patch_size": 8},
    # the untrained reference model's text tower: width 32, 2 layers, CLIP's vocabulary
    "text_cfg": dict(CLIP_MODEL_CFG["text_cfg"]),
}
TRAINING_RECORD = "world_training.json"
"""Written beside the weights: how they were trained and how they measured."""
TRAIN_SEED_BASE = 1_000_000
"""Training images are drawn with world seed ``TRAIN_SEED_BASE + seed``, held-out ones with
``HELD_OUT_SEED``, so the two never share an image."""
HELD_OUT_SEED = 2_000_000
GENERATED_SEED = 3_000_000
"""World seed of the captions of the diffusion samples CLIP trains on (``+ seed``); the
held-out samples it is measured on use ``GENERATED_SEED + HELD_OUT_SEED``."""
LOW_STEP_SEED = 4_000_000
"""World seed base of the low-step samples' captions (``+ 100_000 * steps + seed``)."""
STYLED_SEED = 5_000_000
"""World seed base of the drawn images in a style (``+ seed``) and, ``+ 500_000 + seed``, of
the captions of the adapter's samples (:attr:`ClipTraining.adapter_samples`); held-out ones
add ``HELD_OUT_SEED``."""


@dataclass(frozen=True)
class ClipTraining:
    """How to train: everything that decides the weights."""

    seed: int = 0
    steps: int = 3000
    batch_size: int = 64
    images: int = 12_000
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.05
    caption_share: float = 0.3
    """Share of texts that are the full caption; ``style_share`` are the style prompt and the
    rest one option's prompt, its category drawn uniformly."""
    style_share: float = 0.1
    off_world_share: float = 0.1
    """Non-world images (noise, blank fills) added, as a share of ``images``."""
    generated: int = 0
    """Samples of the world's diffusion model added to the training images, each labelled with
    the traits the oracle reads in it (:func:`~generation.reference_world.diffusion_training.\
oracle_labelled_samples`; those it cannot read are dropped): the gate judges generated images,
    which are softer than drawn ones. 0: drawn images only."""
    generated_steps: int = 20
    generated_guidance: float = 4.0
    low_step_samples: int = 0
    """Further diffusion samples, this many at each of ``low_steps`` (same guidance), labelled
    by the oracle like ``generated``: few-step samples draw more in-between shapes, so they
    are where the misshapen examples come from."""
    low_steps: tuple[int, ...] = (3, 4)
    styles: tuple[str, ...] = ()
    """Styles of :data:`~generation.reference_world.world.STYLES` the model learns to tell from
    the world's own: each adds ``styled_share * images`` world images drawn in it, and its
    prompt (``Placement.prompt``) is true of those and of no image in another placement. ``()``:
    the world's own style only (the world CLIP), and the same weights as before styles existed."""
    styled_share: float = 0.5
    placement_share: float = 0.3
    placement_weight: float = 1.0
    """With ``styles``: the weight of the placement loss (:func:`_placement_loss`), every world
    image against the placement prompts, beside CLIP's batch-wide loss."""
    """With ``styles``: the share of world images whose text is their placement's prompt, their
    style's or :data:`~generation.reference_world.world.CENTRE_PROMPT` (the world's own, true of
    no styled image), drawn after the others so the world CLIP's draws are unchanged: with both
    in most batches, every image is taught which of the two it is."""
    adapter_samples: int = 0
    """Samples of the diffusion model with each style's LoRA adapter applied (give the
    adapters to :func:`train_clip`), labelled by the oracle like ``generated`` and with the
    style only where the pixels put the shape in it (``oracle.placed``)."""
    misshapen: bool = False
    """Train the samples the oracle reads in every category but shape (a rounded square, a
    lopsided triangle) as images of their own kind (:data:`OFF_WORLD_TEXTS` ``misshapen``):
    no shape prompt, caption or the style prompt is true of them, their colour, background,
    size and edition prompts are. The gate's style and shape checks then score them low.
    Off: they are dropped like every sample the oracle cannot read."""


@dataclass(frozen=True)
class Query:
    """A text and which traits it states (``{}`` for the style prompt: true of every image).

    ``off_world`` names the kind of non-world image the text describes (``noise``, ``blank``);
    such a text is true of those images only, and no world text is true of them.
    """

    text: str
    traits: dict[str, str]
    off_world: str | None = None
    style: str | None = None
    """The placement whose prompt this is, true of images in it only: a key of ``STYLES``, or
    :data:`CENTRE` for the world's own; ``None``: any placement."""


CENTRE = "centre"
"""The world's own placement, as :attr:`Query.style` names it (styled images have a key of
``STYLES``)."""

OFF_WORLD_TEXTS = {"noise": "noise", "blank": "a blank image", "misshapen": "a misshapen blob"}
"""What the non-world training images are called: they teach the style prompt what the world
is not (without them a noise image may score higher on it than any world image). A
``misshapen`` image (:attr:`ClipTraining.misshapen`) keeps the prompts of the traits the oracle
reads in it; noise and blank images have none."""


@dataclass(frozen=True)
class OtherImage:
    """A training image that is not a world image: its kind (a key of :data:`OFF_WORLD_TEXTS`)
    and the world traits still true of it (a misshapen sample's colour, background, size and
    edition; none for noise and blank images)."""

    kind: str
    image: Image.Image
    traits: dict[str, str]


def _queries(styles: tuple[str, ...] = ()) -> list[Query]:
    """Every text the training draws from: captions, option prompts, the style prompt, and
    the names of the non-world images, then the prompts of ``styles``."""
    queries = [Query(caption(traits), traits) for traits in all_traits()]
    for category in RARITY["categories"]:
        for option in category["options"]:
            queries.append(Query(option["prompt"], {category["name"]: option["name"]}))
    queries.append(Query(STYLE_PROMPT, {}))
    queries += [Query(text, {}, kind) for kind, text in OFF_WORLD_TEXTS.items()]
    if styles:
        queries.append(Query(CENTRE_PROMPT, {}, style=CENTRE))
    queries += [Query(STYLES[style].prompt, {}, style=style) for style in styles]
    return queries


def _true_of_other(query: Query, other: OtherImage) -> bool:
    """Whether ``query`` is true of a non-world image: its own name, or one option prompt of
    a trait it still has (never a caption or the style prompt)."""
    if query.off_world is not None:
        return query.off_world == other.kind
    ((name, value),) = query.traits.items() if len(query.traits) == 1 else ((None, None),)
    return name is not None and other.traits.get(name) == value


def off_world_images(count: int, seed: int) -> list[tuple[str, Image.Image]]:
    """``count`` images that are not of the world, each with its kind: uniform noise, grey
    noise, smooth noise and flat fills of any colour, in turn (numpy's PCG64 from ``seed``)."""
    rng = np.random.default_rng(seed)
    size = (IMAGE_SIZE, IMAGE_SIZE, 3)
    images: list[tuple[str, Image.Image]] = []
    for index in range(count):
        kind = index % 4
        if kind == 0:
            pixels = rng.integers(0, 256, size)
        elif kind == 1:
            pixels = np.clip(rng.normal(rng.uniform(40, 215), rng.uniform(10, 60), size), 0, 255)
        elif kind == 2:
            coarse = rng.integers(0, 256, (IMAGE_SIZE // 8, IMAGE_SIZE // 8, 3)).astype(np.uint8)
            smooth = Image.fromarray(coarse).resize((IMAGE_SIZE,) * 2, Image.Resampling.BICUBIC)
            pixels = np.asarray(smooth)
        else:
            pixels = np.broadcast_to(rng.integers(0, 256, 3), size)
        image = Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="RGB")
        images.append(("blank" if kind == 3 else "noise", image))
    return images


@dataclass(frozen=True)
class _TrainingSet:
    pixels: torch.Tensor  # (n, 3, H, W), the gate's preprocessing applied
    tokens: torch.Tensor  # (texts, context length)
    truth: torch.Tensor  # (n, texts) bool: is text j true of image i
    captions: torch.Tensor  # (n,) each image's own caption (its off-world text for the others)
    placements: torch.Tensor  # (n,) each world image's placement prompt (-1: none)
    options: torch.Tensor  # (n, categories) each world image's option prompts; -1 for the others
    world: torch.Tensor  # (n,) bool
    style: int


def _training_set(
    training: ClipTraining,
    preprocess: Callable[[Image.Image], torch.Tensor],
    extra: list[WorldImage],
    misshapen: list[OtherImage] | None = None,
    extra_styles: list[str | None] | None = None,
) -> _TrainingSet:
    import open_clip

    queries = _queries(training.styles)
    index = {(q.text, q.off_world): i for i, q in enumerate(queries)}
    world = list(dataset(training.images, TRAIN_SEED_BASE + training.seed))
    styles: list[str | None] = [None] * len(world)
    for style in training.styles:
        count = round(training.images * training.styled_share)
        world += dataset(count, STYLED_SEED + training.seed, style=style)
        styles += [style] * count
    world += extra
    styles += extra_styles if extra_styles is not None else [None] * len(extra)
    others = [
        OtherImage(kind, image, {})
        for kind, image in off_world_images(
            round(training.images * training.off_world_share), TRAIN_SEED_BASE + training.seed
        )
    ] + list(misshapen or [])
    truth = [
        [
            q.off_world is None
            and (q.style is None or q.style == (style or CENTRE))
            and all(item.traits[k] == v for k, v in q.traits.items())
            for q in queries
        ]
        for item, style in zip(world, styles, strict=True)
    ] + [[_true_of_other(q, other) for q in queries] for other in others]
    names = list(CATEGORIES)
    prompts = {
        category["name"]: [option["prompt"] for option in category["options"]]
        for category in RARITY["categories"]
    }
    options = [
        [index[prompts[name][CATEGORIES[name].index(item.traits[name])], None] for name in names]
        for item in world
    ] + [[-1] * len(names) for _ in others]
    return _TrainingSet(
        pixels=torch.stack(
            [preprocess(item.image) for item in world] + [preprocess(o.image) for o in others]
        ),
        tokens=open_clip.SimpleTokenizer(context_length=CONTEXT_LENGTH)([q.text for q in queries]),
        truth=torch.tensor(truth),
        captions=torch.tensor(
            [index[item.caption, None] for item in world]
            + [index[OFF_WORLD_TEXTS[o.kind], o.kind] for o in others]
        ),
        options=torch.tensor(options),
        placements=torch.tensor(
            [
                index[STYLES[s].prompt if s else CENTRE_PROMPT, None] if training.styles else -1
                for s in styles
            ]
            + [-1] * len(others)
        ),
        world=torch.tensor([True] * len(world) + [False] * len(others)),
        style=index[STYLE_PROMPT, None],
    )


def train_clip(
    dest: Path,
    training: ClipTraining = ClipTraining(),
    *,
    diffusion_dir: Path | None = None,
    adapters: dict[str, Path] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the world CLIP and save it to ``dest``; returns the training record (also written
    to ``dest/world_training.json``): the settings, the loss, the time taken and the weights'
    fingerprint. ``training.generated`` samples come from the diffusion model at
    ``diffusion_dir`` (its fingerprint is recorded), ``training.adapter_samples`` from it with
    each style's LoRA adapter of ``adapters`` (style → ``.safetensors`` file) applied."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    dest = Path(dest)
    if (
        training.generated or training.low_step_samples or training.adapter_samples
    ) and diffusion_dir is None:
        raise ValueError("generated samples need the diffusion model: give diffusion_dir")
    for style in training.styles:
        if style not in STYLES:
            raise ValueError(f"style {style!r} is not one of {sorted(STYLES)}")
        if training.adapter_samples and style not in (adapters or {}):
            raise ValueError(f"adapter samples of style {style!r} need its adapter: give adapters")
    with one_torch_thread():
        started = time.monotonic()
        extra: list[WorldImage] = []
        misshapen: list[OtherImage] = []
        extra_styles: list[str | None] = []
        if training.generated or training.low_step_samples:
            from generation.reference_world.samples import (
                complete_readings,
                misshapen_readings,
                oracle_read_samples,
            )

            assert diffusion_dir is not None
            sets = [(training.generated, training.generated_steps, GENERATED_SEED)]
            sets += [
                (training.low_step_samples, steps, LOW_STEP_SEED + 100_000 * steps)
                for steps in training.low_steps
            ]
            for count, steps, base in sets:
                if not count:
                    continue
                read = oracle_read_samples(
                    Path(diffusion_dir),
                    count,
                    base + training.seed,
                    steps=steps,
                    guidance=training.generated_guidance,
                )
                complete = complete_readings(read)
                extra += complete
                odd = misshapen_readings(read) if training.misshapen else []
                misshapen += [OtherImage("misshapen", image, traits) for traits, image in odd]
                log(
                    f"world CLIP: {count} diffusion samples at {steps} steps: the oracle reads "
                    f"{len(complete)} fully, {len(odd)} misshapen kept, in "
                    f"{time.monotonic() - started:.1f} s"
                )
            extra_styles += [None] * len(extra)
        if training.adapter_samples:
            extra_styles += _adapter_samples(
                training, Path(diffusion_dir or ""), adapters or {}, extra, log
            )
        torch.manual_seed(training.seed)
        model = new_clip_model(WORLD_CLIP_CFG, dest)
        # The gate's own preprocessing (create_model_and_transforms' for this config); the
        # tokenizer is the one open_clip.get_tokenizer gives a local-dir model without an HF
        # tokenizer name.
        preprocess = image_transform_v2(
            PreprocessCfg(**model.visual.preprocess_cfg), is_train=False
        )
        data = _training_set(training, preprocess, extra, misshapen, extra_styles)
        count = len(data.pixels)
        log(
            f"world CLIP: {int(data.world.sum())} world and {count - int(data.world.sum())} "
            f"other images, {len(data.tokens)} texts, in {time.monotonic() - started:.1f} s"
        )
        generator = torch.Generator().manual_seed(training.seed)
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=training.learning_rate,
            betas=(0.9, 0.98),
            eps=1e-6,
            weight_decay=training.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: _learning_rate_factor(step, training)
        )
        model.train()
        placement_texts = torch.unique(data.placements[data.world]) if training.styles else None
        order = torch.randperm(count, generator=generator)
        cursor = 0
        losses = []
        for step in range(training.steps):
            if cursor + training.batch_size > count:
                order, cursor = torch.randperm(count, generator=generator), 0
            batch = order[cursor : cursor + training.batch_size]
            cursor += training.batch_size
            texts = torch.unique(_texts_for(batch, data, training, generator))
            targets = data.truth[batch][:, texts].float()
            image_features = F.normalize(model.encode_image(data.pixels[batch]), dim=-1)
            text_features = F.normalize(model.encode_text(data.tokens[texts]), dim=-1)
            logits = model.logit_scale.exp().clamp(max=100.0) * image_features @ text_features.T
            loss = (
                F.cross_entropy(logits, targets / targets.sum(1, keepdim=True))
                + F.cross_entropy(logits.T, (targets / targets.sum(0, keepdim=True)).T)
            ) / 2
            if placement_texts is not None:
                loss = loss + training.placement_weight * _placement_loss(
                    model, image_features, batch, data, placement_texts
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if (step + 1) % 100 == 0 or step + 1 == training.steps:
                recent = sum(losses[-100:]) / len(losses[-100:])
                log(f"  step {step + 1}/{training.steps}: loss {recent:.4f}")
        model.eval()
        unused = _zero_unused_tokens(model, data.tokens)
        log(f"  {unused} token embeddings no training text uses set to zero")
        save_clip_model(model, WORLD_CLIP_CFG, dest)
        elapsed = time.monotonic() - started
    record = {
        "training": asdict(training),
        "model_cfg": WORLD_CLIP_CFG,
        "final_loss": sum(losses[-100:]) / len(losses[-100:]),
        "seconds": round(elapsed, 1),
        "threads": 1,
        "fingerprint": model_fingerprint(dest),
        "generated_kept": len(extra),
        "misshapen_kept": len(misshapen),
        "diffusion_fingerprint": model_fingerprint(Path(diffusion_dir)) if diffusion_dir else None,
        **_adapter_record(training, adapters or {}),
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__},
    }
    (dest / TRAINING_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _placement_loss(
    model: Any,
    image_features: torch.Tensor,
    batch: torch.Tensor,
    data: _TrainingSet,
    placement_texts: torch.Tensor,
) -> torch.Tensor:
    """Each world image of the batch against every placement prompt (the centre's and each
    style's), its own the target: CLIP's image-to-text loss with the placements as hard
    negatives. The batch-wide loss alone leaves them untaught: a placement prompt meets
    images of the other placement in a batch, but their traits tell them apart before
    their placement does, so nothing makes the embedding hold where the shape sits."""
    world = data.world[batch]
    features = F.normalize(model.encode_text(data.tokens[placement_texts]), dim=-1)
    logits = model.logit_scale.exp().clamp(max=100.0) * image_features[world] @ features.T
    target = torch.searchsorted(placement_texts, data.placements[batch][world])
    return F.cross_entropy(logits, target)


def _adapter_samples(
    training: ClipTraining,
    diffusion_dir: Path,
    adapters: dict[str, Path],
    extra: list[WorldImage],
    log: Callable[[str], None],
) -> list[str | None]:
    """Render ``training.adapter_samples`` samples with each style's adapter, add those the
    oracle reads fully to ``extra`` and return their styles: the style where
    :func:`~generation.reference_world.oracle.placed` finds the shape in it, ``None``
    (the world's own placement) where it does not."""
    from generation.reference_world.oracle import placed
    from generation.reference_world.samples import complete_readings, oracle_read_samples

    styles: list[str | None] = []
    for style in training.styles:
        started = time.monotonic()
        read = oracle_read_samples(
            diffusion_dir,
            training.adapter_samples,
            STYLED_SEED + 500_000 + training.seed,
            steps=training.generated_steps,
            guidance=training.generated_guidance,
            adapters=[(Path(adapters[style]), 1.0)],
        )
        complete = complete_readings(read)
        kept = [style if placed(item.image, style) else None for item in complete]
        extra += complete
        styles += kept
        log(
            f"world CLIP: {training.adapter_samples} samples with the {style} adapter: the oracle "
            f"reads {len(complete)} fully, {sum(s is not None for s in kept)} in the style, in "
            f"{time.monotonic() - started:.1f} s"
        )
    return styles


def _adapter_record(training: ClipTraining, adapters: dict[str, Path]) -> dict[str, Any]:
    """The adapters' fingerprints, for a model trained on their samples (nothing otherwise, so
    the world CLIP's record keeps its keys)."""
    if not training.adapter_samples:
        return {}
    from generation.lora import adapter_fingerprint

    return {"adapter_fingerprints": {s: adapter_fingerprint(adapters[s]) for s in training.styles}}


def _zero_unused_tokens(model: Any, tokens: torch.Tensor) -> int:
    """Zero the token embedding rows of every token no training text contains; returns how many.

    Training never moves them from their random start except by weight decay, so they carry
    nothing; zeros make the weights file compress to a fraction of its size (most of the model
    is the 49,408-row table). A text with other words still encodes, to what an untrained
    model would give it.
    """
    return zero_unused_rows(model.token_embedding.weight, tokens)


def zero_unused_rows(table: torch.Tensor, tokens: torch.Tensor) -> int:
    """Set to zero the rows of the token table ``table`` whose ids appear nowhere in
    ``tokens``; returns how many."""
    used = torch.zeros(table.shape[0], dtype=torch.bool)
    used[tokens.unique()] = True
    with torch.no_grad():
        table[~used] = 0.0
    return int((~used).sum())


def _learning_rate_factor(step: int, training: ClipTraining) -> float:
    if step < training.warmup_steps:
        return (step + 1) / training.warmup_steps
    progress = (step - training.warmup_steps) / max(training.steps - training.warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _texts_for(
    batch: torch.Tensor, data: _TrainingSet, training: ClipTraining, generator: torch.Generator
) -> torch.Tensor:
    """One text per image of the batch, drawn from ``generator``: a world image's caption,
    one of its option prompts or the style prompt; another image's own name."""
    kinds = torch.rand(len(batch), generator=generator)
    categories = torch.randint(len(CATEGORIES), (len(batch),), generator=generator)
    option = data.options[batch, categories]
    chosen = torch.where(kinds < training.caption_share + training.style_share, data.style, option)
    chosen = torch.where(kinds < training.caption_share, data.captions[batch], chosen)
    if training.styles:
        placement = torch.rand(len(batch), generator=generator) < training.placement_share
        chosen = torch.where(placement, data.placements[batch], chosen)
    return torch.where(data.world[batch], chosen, data.captions[batch])


def evaluate_clip(
    clip_dir: Path, *, count: int = 500, diffusion_dir: Path | None = None
) -> dict[str, Any]:
    """Measure the saved model as the gate uses it, on ``count`` held-out world images.

    Returns, on the 0-1 scale:

    - ``zero_shot``: category → share of images whose own option's prompt scores highest among
      the category's prompts (``circle`` against ``square`` and ``triangle``): the ranking the
      gate's trait check makes;
    - ``via_caption``: category → share of images whose best-scoring caption of all 96 has the
      right option (the full caption carries the other traits as context);
    - ``caption``: share whose own caption scores highest of all 96;
    - the style prompt's cosine on world images (min, mean) and on noise and blank images (max);
    - ``same_traits_cosine_mean`` and ``other_traits_cosine_max``: image-to-image cosines
      between held-out images with the same traits and with different traits, what the
      gate's uniqueness check compares (``None`` when no two images form such a pair).

    With ``diffusion_dir``, also ``generated``: the zero-shot share per category on ``count``
    held-out samples of that diffusion model, against what the oracle reads in them (samples
    it cannot read are left out; ``generated_images`` says how many were scored).
    """
    with one_torch_thread():
        scorer = ClipScorer(Path(clip_dir), device="cpu")
        figures = _evaluate(scorer, count)
        if diffusion_dir is not None:
            from generation.reference_world.samples import oracle_labelled_samples

            samples = oracle_labelled_samples(
                Path(diffusion_dir), count, GENERATED_SEED + HELD_OUT_SEED
            )
            figures["generated_images"] = len(samples)
            figures["generated"] = _zero_shot(scorer, samples)
        return figures


def _zero_shot(scorer: ClipScorer, items: list[WorldImage]) -> dict[str, float]:
    """Category → share of ``items`` whose own option's prompt scores highest in its category."""
    prompts = {
        category["name"]: [option["prompt"] for option in category["options"]]
        for category in RARITY["categories"]
    }
    right = dict.fromkeys(CATEGORIES, 0)
    for item in items:
        embedding = scorer.image_embedding(item.image)
        for name, texts in prompts.items():
            best = int(np.argmax(scorer.text_embeddings(texts) @ embedding))
            right[name] += CATEGORIES[name][best] == item.traits[name]
    return {name: right[name] / max(len(items), 1) for name in CATEGORIES}


def _evaluate(scorer: ClipScorer, count: int) -> dict[str, Any]:
    items = list(dataset(count, HELD_OUT_SEED))
    prompts = {
        category["name"]: [option["prompt"] for option in category["options"]]
        for category in RARITY["categories"]
    }
    combinations = list(all_traits())
    captions = [caption(traits) for traits in combinations]
    right = dict.fromkeys(CATEGORIES, 0)
    via_caption = dict.fromkeys(CATEGORIES, 0)
    caption_right = 0
    caption_matrix = scorer.text_embeddings(captions)
    style_vector = scorer.text_embeddings([STYLE_PROMPT])[0]
    embeddings = np.stack([scorer.image_embedding(item.image) for item in items])
    for item, embedding in zip(items, embeddings, strict=True):
        best_caption = int(np.argmax(caption_matrix @ embedding))
        caption_right += captions[best_caption] == item.caption
        for name, texts in prompts.items():
            best = int(np.argmax(scorer.text_embeddings(texts) @ embedding))
            right[name] += CATEGORIES[name][best] == item.traits[name]
            via_caption[name] += combinations[best_caption][name] == item.traits[name]
    style_scores = embeddings @ style_vector
    others = off_world_images(max(count // 10, 8), HELD_OUT_SEED)
    other_scores = [float(style_vector @ scorer.image_embedding(image)) for _, image in others]
    labels = np.array([captions.index(item.caption) for item in items])
    same = labels[:, None] == labels[None, :]
    pairs = np.triu(np.ones_like(same), k=1)
    cosines = embeddings @ embeddings.T
    return {
        "images": count,
        "zero_shot": {name: right[name] / count for name in CATEGORIES},
        "via_caption": {name: via_caption[name] / count for name in CATEGORIES},
        "caption": caption_right / count,
        "style_world_min": float(style_scores.min()),
        "style_world_mean": float(style_scores.mean()),
        "style_noise_and_blank_max": max(other_scores),
        "same_traits_cosine_mean": _mean_or_none(cosines[same & pairs]),
        "other_traits_cosine_max": _max_or_none(cosines[~same & pairs]),
    }


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None  # too few images to have a pair


def _max_or_none(values: np.ndarray) -> float | None:
    return float(values.max()) if values.size else None


def separating_threshold(accept: Sequence[float], refuse: Sequence[float]) -> dict[str, Any]:
    """The threshold (rounded to the gate's decimals) that puts most of ``accept`` at or above
    it and most of ``refuse`` below: half-way across the gap when the two groups do not
    overlap, else the score that leaves the fewest on the wrong side. Returns it with how
    many of each group land on the wrong side."""
    from generation.clip_gate import SCORE_DECIMALS

    low, high = min(accept), max(refuse)
    if low > high:
        threshold = round((low + high) / 2, SCORE_DECIMALS)
    else:
        candidates = sorted(set(accept) | set(refuse))
        threshold = min(
            candidates,
            key=lambda t: sum(a < t for a in accept) + sum(r >= t for r in refuse),
        )
    return {
        "threshold": threshold,
        "accept_refused": sum(a < threshold for a in accept),
        "refuse_accepted": sum(r >= threshold for r in refuse),
    }


def evaluate_style(
    clip_dir: Path,
    style: str,
    *,
    diffusion_dir: Path,
    adapter: Path,
    count: int = 64,
) -> dict[str, Any]:
    """Measure how the saved model tells ``style`` from the world's own, as the gate would:
    the cosine of the style's prompt to held-out drawn images in the style and not, and to
    ``count`` held-out renders of the diffusion model with the style's adapter and without it
    (same captions, same image seeds); :func:`separating_threshold` of the renders' scores,
    and the gate's zero-shot trait ranking on the adapter's renders against what the oracle
    reads in them. ``style_images``: the same for the style-image check, the renders' cosine
    to the mean of the adapter's reference images (its folder's ``style/``; ``None`` without
    them)."""
    from generation.clip_gate import reference_embedding
    from generation.reference_world.collection import STYLE_DIR
    from generation.reference_world.samples import complete_readings, oracle_read_samples

    prompt = STYLES[style].prompt
    with one_torch_thread():
        scorer = ClipScorer(Path(clip_dir), device="cpu")
        vector = scorer.text_embeddings([prompt])[0]

        def scores(images: Iterable[Image.Image]) -> list[float]:
            return [round(float(vector @ scorer.image_embedding(im)), 6) for im in images]

        drawn_styled = scores(
            item.image for item in dataset(count, STYLED_SEED + HELD_OUT_SEED, style=style)
        )
        drawn_plain = scores(item.image for item in dataset(count, HELD_OUT_SEED))
        seed = STYLED_SEED + 500_000 + HELD_OUT_SEED
        with_adapter = oracle_read_samples(
            Path(diffusion_dir), count, seed, adapters=[(Path(adapter), 1.0)]
        )
        without = oracle_read_samples(Path(diffusion_dir), count, seed)
        adapter_scores = scores(image for _, image in with_adapter)
        plain_scores = scores(image for _, image in without)
        readable = complete_readings(with_adapter)
        references = sorted((Path(adapter).parent / STYLE_DIR).glob("*.png"))
        style_images = None
        if references:  # an adapter written by train_lora has them beside it
            centre = reference_embedding(scorer, references)
            near_with = [
                round(float(centre @ scorer.image_embedding(i)), 6) for _, i in with_adapter
            ]
            near_without = [round(float(centre @ scorer.image_embedding(i)), 6) for _, i in without]
            style_images = {
                "with_adapter": _range(near_with),
                "without": _range(near_without),
                **separating_threshold(near_with, near_without),
            }
        return {
            "prompt": prompt,
            "drawn_in_style": _range(drawn_styled),
            "drawn_world": _range(drawn_plain),
            "renders_with_adapter": _range(adapter_scores),
            "renders_without": _range(plain_scores),
            "renders": count,
            **separating_threshold(adapter_scores, plain_scores),
            "adapter_renders_read": len(readable),
            "style_images": style_images,
            "adapter_zero_shot": _zero_shot(scorer, readable),
        }


def _range(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}
