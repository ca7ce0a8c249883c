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
from collections.abc import Callable
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
    IMAGE_SIZE,
    RARITY,
    STYLE_PROMPT,
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
LOW_STEP_SEED = 4_000_000
"""World seed base of the low-step samples' captions (``+ 100_000 * steps + seed``)."""
"""World seed of the captions of the diffusion samples CLIP trains on (``+ seed``); the
held-out samples it is measured on use ``GENERATED_SEED + HELD_OUT_SEED``."""


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


def _queries() -> list[Query]:
    """Every text the training draws from: captions, option prompts, the style prompt, and
    the names of the non-world images."""
    queries = [Query(caption(traits), traits) for traits in all_traits()]
    for category in RARITY["categories"]:
        for option in category["options"]:
            queries.append(Query(option["prompt"], {category["name"]: option["name"]}))
    queries.append(Query(STYLE_PROMPT, {}))
    queries += [Query(text, {}, kind) for kind, text in OFF_WORLD_TEXTS.items()]
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
    options: torch.Tensor  # (n, categories) each world image's option prompts; -1 for the others
    world: torch.Tensor  # (n,) bool
    style: int


def _training_set(
    training: ClipTraining,
    preprocess: Callable[[Image.Image], torch.Tensor],
    extra: list[WorldImage],
    misshapen: list[OtherImage] | None = None,
) -> _TrainingSet:
    import open_clip

    queries = _queries()
    index = {(q.text, q.off_world): i for i, q in enumerate(queries)}
    world = list(dataset(training.images, TRAIN_SEED_BASE + training.seed)) + extra
    others = [
        OtherImage(kind, image, {})
        for kind, image in off_world_images(
            round(training.images * training.off_world_share), TRAIN_SEED_BASE + training.seed
        )
    ] + list(misshapen or [])
    truth = [
        [
            q.off_world is None and all(item.traits[k] == v for k, v in q.traits.items())
            for q in queries
        ]
        for item in world
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
        world=torch.tensor([True] * len(world) + [False] * len(others)),
        style=index[STYLE_PROMPT, None],
    )


def train_clip(
    dest: Path,
    training: ClipTraining = ClipTraining(),
    *,
    diffusion_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the world CLIP and save it to ``dest``; returns the training record (also written
    to ``dest/world_training.json``): the settings, the loss, the time taken and the weights'
    fingerprint. ``training.generated`` samples come from the diffusion model at
    ``diffusion_dir`` (its fingerprint is recorded)."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    dest = Path(dest)
    if (training.generated or training.low_step_samples) and diffusion_dir is None:
        raise ValueError("generated samples need the diffusion model: give diffusion_dir")
    with one_torch_thread():
        started = time.monotonic()
        extra: list[WorldImage] = []
        misshapen: list[OtherImage] = []
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
        torch.manual_seed(training.seed)
        model = new_clip_model(WORLD_CLIP_CFG, dest)
        # The gate's own preprocessing (create_model_and_transforms' for this config); the
        # tokenizer is the one open_clip.get_tokenizer gives a local-dir model without an HF
        # tokenizer name.
        preprocess = image_transform_v2(
            PreprocessCfg(**model.visual.preprocess_cfg), is_train=False
        )
        data = _training_set(training, preprocess, extra, misshapen)
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
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__},
    }
    (dest / TRAINING_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


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
