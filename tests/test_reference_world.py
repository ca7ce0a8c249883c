"""The reference world (generation/reference_world/): images drawn from traits, read back by
the pixel oracle. Pure functions, no database, no model.

The oracle is the judge of the CLIP gate, so it is held to more than the gate: every trait of
every clean world image, and of the same images degraded the way generated images are (noise,
blur), and never a trait for an image that is not a world image.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image, ImageFilter

from generation.clip_gate import ClipScorer
from generation.reference_models import REFERENCE_IMAGE_SIZE, model_fingerprint
from generation.reference_world.clip_training import TRAINING_RECORD, ClipTraining, train_clip
from generation.reference_world.oracle import read_traits
from generation.reference_world.world import (
    CATEGORIES,
    FRAME_WIDTH,
    IMAGE_SIZE,
    PROMPT_TEMPLATE,
    RARE_CATEGORY,
    RARE_OPTION,
    RARITY,
    all_traits,
    caption,
    dataset,
    draw,
    item_seed,
    world_traits,
)
from generation.traits import trait_probabilities, validate_rarity, validate_template

SEEDS_PER_COMBINATION = 3  # 96 combinations: 288 images


def _traits(shape: str, colour: str, background: str, size: str, edition: str) -> dict[str, str]:
    return {
        "shape": shape,
        "colour": colour,
        "background": background,
        "size": size,
        "edition": edition,
    }


def _images() -> list[tuple[dict[str, str], Image.Image]]:
    return [
        (traits, draw(traits, item_seed(16, k * 96 + j)))
        for k in range(SEEDS_PER_COMBINATION)
        for j, traits in enumerate(all_traits())
    ]


IMAGES = _images()


def _noise(sigma: float) -> Callable[[Image.Image, int], Image.Image]:
    def add(image: Image.Image, index: int) -> Image.Image:
        rng = np.random.default_rng(index)
        pixels = np.asarray(image, dtype=np.float64) + rng.normal(0.0, sigma, (64, 64, 3))
        return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))

    return add


def _blur(radius: float) -> Callable[[Image.Image, int], Image.Image]:
    return lambda image, _index: image.filter(ImageFilter.GaussianBlur(radius))


DEGRADATIONS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "clean": lambda image, _index: image,
    "noise sigma 8": _noise(8.0),
    "noise sigma 15": _noise(15.0),
    "noise sigma 25": _noise(25.0),
    "blur 1": _blur(1.0),
    "blur 1 then noise sigma 8": lambda image, i: _noise(8.0)(_blur(1.0)(image, i), i),
}
HEAVY_DEGRADATIONS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "blur 2": _blur(2.0),
    "blur 1.5 then noise sigma 15": lambda image, i: _noise(15.0)(_blur(1.5)(image, i), i),
    "noise sigma 35": _noise(35.0),
}


@pytest.mark.parametrize("degradation", DEGRADATIONS)
def test_it_reads_every_trait_of_every_world_image(degradation: str) -> None:
    # Given 288 world images, three of each of the 96 trait combinations, degraded or not
    degrade = DEGRADATIONS[degradation]
    # When the oracle reads each one
    wrong: Counter[str] = Counter()
    examples = []
    for index, (traits, image) in enumerate(IMAGES):
        reading = read_traits(degrade(image, index))
        for category, right in reading.correct(traits).items():
            if not right:
                wrong[category] += 1
                examples.append((traits, reading.traits))
    # Then it reads every trait right: accuracy 1.0 in every category
    assert not wrong, f"{dict(wrong)} wrong of {len(IMAGES)}, e.g. {examples[:3]}"


@pytest.mark.parametrize("degradation", HEAVY_DEGRADATIONS)
def test_it_reads_no_wrong_trait_from_a_badly_degraded_world_image(degradation: str) -> None:
    # Given world images blurred or noised beyond what a render does
    degrade = HEAVY_DEGRADATIONS[degradation]
    # When the oracle reads them, it may not tell some traits, but every trait it reads is right
    wrong = []
    for index, (traits, image) in enumerate(IMAGES):
        reading = read_traits(degrade(image, index))
        wrong += [
            (category, value, traits[category])
            for category, value in reading.traits.items()
            if value is not None and value != traits[category]
        ]
    assert not wrong, f"{len(wrong)} wrong readings (category, read, drawn), e.g. {wrong[:3]}"


def _rng_image(make: Callable[[np.random.Generator], np.ndarray]) -> Image.Image:
    return Image.fromarray(make(np.random.default_rng(5)).astype(np.uint8), mode="RGB")


NOT_WORLD_IMAGES = {
    "uniform noise": lambda: _rng_image(lambda r: r.integers(0, 256, (64, 64, 3))),
    "grey noise": lambda: _rng_image(lambda r: np.clip(r.normal(128, 40, (64, 64, 3)), 0, 255)),
    "smooth noise": lambda: _rng_image(lambda r: r.integers(0, 256, (64, 64, 3))).filter(
        ImageFilter.GaussianBlur(3)
    ),
    "black": lambda: Image.new("RGB", (64, 64)),
    "white": lambda: Image.new("RGB", (64, 64), (255, 255, 255)),
    "light grey blank": lambda: Image.new("RGB", (64, 64), (220, 220, 220)),
    "red fill": lambda: Image.new("RGB", (64, 64), (200, 30, 30)),
    "gold fill": lambda: Image.new("RGB", (64, 64), (212, 168, 38)),
}


@pytest.mark.parametrize("kind", NOT_WORLD_IMAGES)
def test_it_reads_no_trait_from_an_image_that_is_not_a_world_image(kind: str) -> None:
    reading = read_traits(NOT_WORLD_IMAGES[kind]())
    assert reading.traits == dict.fromkeys(CATEGORIES)


def test_it_reads_no_object_trait_when_the_picture_holds_two_objects() -> None:
    # Two small red circles side by side: the oracle cannot say which one is the token's
    traits = _traits("circle", "red", "light", "small", "common")
    one = draw(traits, b"one")
    two = one.copy()
    crop = one.crop((19, 19, 45, 45))
    two.paste(Image.new("RGB", (54, 54), one.getpixel((6, 6))), (5, 5))
    two.paste(crop, (5, 19))
    two.paste(crop, (32, 19))
    assert read_traits(one).traits == traits
    reading = read_traits(two)
    assert [reading.traits[c] for c in ("shape", "colour", "size")] == [None, None, None]


def test_a_legendary_with_half_its_frame_never_reads_as_common() -> None:
    # Given a legendary token whose frame a render drew on two sides only
    traits = dict(next(iter(all_traits())), **{RARE_CATEGORY: RARE_OPTION})
    image = draw(traits, b"half-frame")
    pixels = np.asarray(image).copy()
    background = pixels[FRAME_WIDTH + 1, FRAME_WIDTH + 1].copy()
    pixels[:FRAME_WIDTH, :] = background
    pixels[-FRAME_WIDTH:, :] = background
    # Then the oracle reads neither legendary nor common, and the rest as drawn
    reading = read_traits(Image.fromarray(pixels))
    assert reading.traits[RARE_CATEGORY] is None
    assert read_traits(image).traits[RARE_CATEGORY] == RARE_OPTION
    assert {k: v for k, v in reading.traits.items() if k != RARE_CATEGORY} == {
        k: v for k, v in traits.items() if k != RARE_CATEGORY
    }


def test_it_reads_a_larger_render_of_the_world_at_the_world_size() -> None:
    traits = _traits("triangle", "purple", "dark", "large", "legendary")
    large = draw(traits, b"big").resize((256, 256), Image.Resampling.BICUBIC)
    assert read_traits(large).traits == traits


def test_it_draws_the_same_pixels_from_the_same_seed_and_others_from_another() -> None:
    traits = next(iter(all_traits()))
    first, again, other = draw(traits, b"a"), draw(traits, b"a"), draw(traits, b"b")
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()
    assert first.size == (IMAGE_SIZE, IMAGE_SIZE) == (REFERENCE_IMAGE_SIZE,) * 2
    assert first.mode == "RGB"


def test_its_images_are_the_same_on_every_machine() -> None:
    # The world is training data whose provenance is recorded: its pixels are a pure function
    # of the seed (SHA-256 jitter, exact sub-pixel sampling), so this digest never changes.
    digest = hashlib.sha256()
    for item in dataset(24, seed=0):
        digest.update(item.caption.encode() + item.image.tobytes())
    assert digest.hexdigest() == GOLDEN_DATASET_SHA256


GOLDEN_DATASET_SHA256 = "21817aa0876244b77a8ecc37fd5f56f9920bb340281c15ed85a319518a877ed2"


def test_its_rarity_table_and_template_are_valid_for_a_collection() -> None:
    assert validate_rarity(RARITY, max_supply=10_000) == []
    assert validate_template(PROMPT_TEMPLATE, RARITY) == []
    assert all(category.get("verify") for category in RARITY["categories"])


def test_exactly_one_option_is_rare() -> None:
    probabilities = trait_probabilities(RARITY, max_supply=10_000)
    rare = [
        (category, option)
        for category, options in probabilities.items()
        for option, p in options.items()
        if p < 0.2
    ]
    assert rare == [(RARE_CATEGORY, RARE_OPTION)]
    assert probabilities[RARE_CATEGORY][RARE_OPTION] == 0.05


def test_a_collection_draws_legendary_about_one_token_in_twenty() -> None:
    draws = Counter(world_traits(i.to_bytes(32, "big"))[RARE_CATEGORY] for i in range(4000))
    assert 150 <= draws[RARE_OPTION] <= 250  # 200 expected, sd 14


def test_each_caption_names_its_traits() -> None:
    traits = _traits("square", "blue", "dark", "small", "legendary")
    assert caption(traits) == "a small blue square on a dark background, gold frame"
    assert caption(dict(traits, edition="common")).endswith(", no frame")


def test_it_refuses_traits_of_another_world() -> None:
    with pytest.raises(ValueError, match="'hexagon' is not an option of 'shape'"):
        draw(dict(next(iter(all_traits())), shape="hexagon"), b"x")
    with pytest.raises(ValueError, match="exactly the categories"):
        draw({"shape": "circle"}, b"x")


def test_its_clip_trains_to_the_same_bytes_twice_and_loads_as_the_gate_loads_it(
    tmp_path: Path,
) -> None:
    # A few steps on a few images: what matters here is the layout and the determinism
    # (docs/reference-world.md gives the full run's figures)
    short = ClipTraining(seed=3, steps=4, images=64, batch_size=32, warmup_steps=2)
    first = train_clip(tmp_path / "first", short, log=lambda _line: None)
    second = train_clip(tmp_path / "second", short, log=lambda _line: None)
    weights = "open_clip_model.safetensors"
    assert (tmp_path / "first" / weights).read_bytes() == (
        tmp_path / "second" / weights
    ).read_bytes()
    assert first["fingerprint"] == second["fingerprint"] == model_fingerprint(tmp_path / "first")
    # The gate loads it through open_clip's local-dir schema, as it loads any model
    scorer = ClipScorer(tmp_path / "first", device="cpu")
    assert scorer.fingerprint == first["fingerprint"]
    image = draw(next(iter(all_traits())), b"gate")
    assert len(scorer.score(image, ["circle", "square"])) == 2
    recorded = json.loads((tmp_path / "first" / TRAINING_RECORD).read_text())
    assert recorded["training"]["seed"] == 3 and recorded["threads"] == 1


def test_the_training_command_trains_saves_and_measures_the_clip(tmp_path: Path) -> None:
    out = io.StringIO()
    call_command(
        "train_reference_world",
        "--clip",
        "--out",
        str(tmp_path),
        "--steps",
        "2",
        "--images",
        "32",
        "--evaluate",
        "16",
        stdout=out,
    )
    printed = out.getvalue()
    assert "trained in" in printed and "fingerprint sha256:" in printed
    figures = json.loads(printed[printed.index("{") :])
    assert figures["images"] == 16
    assert set(figures["zero_shot"]) == set(figures["via_caption"]) == set(CATEGORIES)
    assert (tmp_path / "clip" / "open_clip_model.safetensors").is_file()


def test_the_training_command_asks_what_to_train() -> None:
    with pytest.raises(CommandError, match="--clip"):
        call_command("train_reference_world")
