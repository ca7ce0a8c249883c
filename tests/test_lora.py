"""LoRA adapters (generation/lora.py) on the reference world's real diffusion model, with the
committed adapter ``models/reference-world/lora/top-left`` that ``manage.py train_lora``
trained (generation/reference_world/lora_training.py; docs/lora.md has the figures).

What a collection manager would notice: renders with the adapter are in its style and keep
their traits (the world's pixel oracle reads them), the same seed gives the same bytes, scale
0 is the base model, adapters that cannot work are refused naming ``lora_adapters``, and a
short training run is deterministic. No database, no mocks.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from django.conf import settings
from django.core.management import call_command
from PIL import Image
from safetensors.torch import save_file

from generation.clip_gate import check_image, get_scorer, reference_embedding
from generation.errors import ModelReferenceError
from generation.lora import (
    BASE_FINGERPRINT_KEY,
    adapter_fingerprint,
    apply_adapters,
    check_adapter,
)
from generation.reference_models import model_fingerprint
from generation.reference_world.clip_training import TRAINING_RECORD as CLIP_RECORD
from generation.reference_world.collection import STYLE_DIR, WEIGHT_NAME, styled_collection_fields
from generation.reference_world.lora_training import TRAINING_RECORD
from generation.reference_world.oracle import placed, read_traits
from generation.reference_world.samples import render_captions
from generation.reference_world.world import IMAGE_SIZE, all_traits, dataset, draw, item_seed
from generation.rendering import Renderer, RenderParams, png_bytes

WORLD = Path(settings.REFERENCE_WORLD_DIR)
BASE = WORLD / "diffusion"
STYLE = "top-left"
ADAPTER_DIR = WORLD / "lora" / STYLE
ADAPTER = ADAPTER_DIR / WEIGHT_NAME
RENDERS = 32
STEPS, GUIDANCE = 20, 4.0


@dataclass
class HeldOut:
    with_adapter: list[Image.Image]
    without: list[Image.Image]
    traits: list[dict[str, str]]


def _captions(count: int) -> tuple[list[str], list[dict[str, str]]]:
    items = list(dataset(count, 3_000_000))
    return [item.caption for item in items], [item.traits for item in items]


def _render(renderer: Renderer, captions: list[str]) -> list[bytes]:
    images = render_captions(
        renderer, captions, lambda i: f"lora-test:{i}".encode(), steps=STEPS, guidance=GUIDANCE
    )
    return [png_bytes(image) for image in images]


@pytest.fixture(scope="module")
def plain() -> Renderer:
    return Renderer(BASE, device="cpu")


@pytest.fixture(scope="module")
def styled() -> Renderer:
    renderer = Renderer(BASE, device="cpu")
    # A scheduler variant built before the adapter goes in: it shares the UNet it changes
    renderer.pipeline_for("EulerDiscreteScheduler")
    apply_adapters(renderer.pipe, [(ADAPTER, 1.0)])
    return renderer


def test_the_committed_adapter_is_for_the_committed_model_and_its_record_says_so() -> None:
    record = json.loads((ADAPTER_DIR / TRAINING_RECORD).read_text())
    assert record["fingerprint"] == adapter_fingerprint(ADAPTER)
    assert record["base_fingerprint"] == model_fingerprint(BASE)
    check_adapter(ADAPTER, model_fingerprint(BASE))
    assert len(list((ADAPTER_DIR / STYLE_DIR).glob("*.png"))) == 16


def test_every_trait_of_the_style_is_still_read_by_the_oracle_on_drawn_images() -> None:
    # Given every trait combination drawn in the style and without it, 3 seeds each
    for k in range(3):
        for j, traits in enumerate(all_traits()):
            seed = item_seed(17, k * 96 + j)
            styled_image, plain_image = draw(traits, seed, style=STYLE), draw(traits, seed)
            # Then the oracle reads the traits, and the style measure tells the two apart
            assert read_traits(styled_image).traits == traits
            assert placed(styled_image, STYLE) and not placed(plain_image, STYLE)


def test_draw_refuses_a_style_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="style 'sepia'"):
        draw(next(iter(all_traits())), b"x", style="sepia")


@pytest.fixture(scope="module")
def held_out(plain: Renderer, styled: Renderer) -> HeldOut:
    """``RENDERS`` held-out captions rendered with the adapter and without it, same seeds."""
    captions, traits = _captions(RENDERS)
    return HeldOut(
        [Image.open(io.BytesIO(b)).convert("RGB") for b in _render(styled, captions)],
        [Image.open(io.BytesIO(b)).convert("RGB") for b in _render(plain, captions)],
        traits,
    )


def test_renders_with_the_adapter_are_in_its_style_and_keep_their_traits(
    held_out: HeldOut,
) -> None:
    with_adapter, without, traits = held_out.with_adapter, held_out.without, held_out.traits
    # The base model never draws a shape there; with the adapter, every render has it there
    assert [placed(image, STYLE) for image in without] == [False] * RENDERS
    assert [placed(image, STYLE) for image in with_adapter] == [True] * RENDERS
    # And the oracle reads the traits of most as their captions say (27 of these 32 with the
    # committed adapter, 31 of 32 without it: docs/lora.md)
    right = sum(
        read_traits(image).traits == t for image, t in zip(with_adapter, traits, strict=True)
    )
    assert right >= 0.8 * RENDERS


def test_the_styled_gate_accepts_renders_with_the_adapter_and_refuses_those_without_it(
    held_out: HeldOut,
) -> None:
    # Given the world collection with the adapter and its style's gate (the style's CLIP,
    # prompt and reference images, thresholds from STYLED_GATES)
    fields = styled_collection_fields(WORLD, STYLE)
    scorer = get_scorer(Path(fields["clip_dir"]), device="cpu")
    references = reference_embedding(scorer, [Path(p) for p in fields["style_images"]])

    def style_failures(image: Image.Image) -> list[str]:
        verdict = check_image(
            scorer,
            image,
            fields["style_prompt"],
            fields["clip_threshold"],
            style_reference=references,
            style_reference_threshold=fields["style_images_threshold"],
        )
        return [reason for reason in verdict.reasons if "style" in reason]

    # When the gate checks the same captions and seeds rendered with and without the adapter
    with_adapter = [style_failures(image) for image in held_out.with_adapter]
    without = [style_failures(image) for image in held_out.without]
    # Then every render without the adapter fails its style checks, and those with it pass
    assert all(without), [i for i, failed in enumerate(without) if not failed]
    assert with_adapter == [[]] * RENDERS, [i for i, failed in enumerate(with_adapter) if failed]
    # The world's own gate cannot tell them apart (docs/lora.md): the style is the new CLIP's


def test_the_style_clip_is_the_one_its_record_names_trained_with_the_committed_adapter() -> None:
    clip_dir = Path(styled_collection_fields(WORLD, STYLE)["clip_dir"])
    record = json.loads((clip_dir / CLIP_RECORD).read_text())
    assert record["fingerprint"] == model_fingerprint(clip_dir)
    assert record["diffusion_fingerprint"] == model_fingerprint(BASE)
    assert record["adapter_fingerprints"] == {STYLE: adapter_fingerprint(ADAPTER)}
    assert record["training"]["styles"] == [STYLE]


def test_the_same_seed_and_adapter_give_the_same_bytes_and_every_scheduler_has_the_style(
    styled: Renderer,
) -> None:
    captions, _ = _captions(4)
    first, again = _render(styled, captions), _render(styled, captions)
    assert first == again
    # The scheduler variant built before the adapter went in renders in the style too
    params = RenderParams(
        prompt=captions[0],
        negative_prompt="",
        steps=STEPS,
        guidance=GUIDANCE,
        width=IMAGE_SIZE,
        height=IMAGE_SIZE,
        scheduler="EulerDiscreteScheduler",
    )
    images = [styled.render(params, f"euler:{i}".encode(), 0) for i in range(4)]
    assert [placed(image, STYLE) for image in images] == [True] * 4


def test_scale_zero_renders_the_base_models_image_byte_for_byte(plain: Renderer) -> None:
    zero = Renderer(BASE, device="cpu")
    apply_adapters(zero.pipe, [(ADAPTER, 0.0)])
    captions, _ = _captions(4)
    assert _render(zero, captions) == _render(plain, captions)


def _not_a_lora(path: Path) -> Path:
    save_file({"weight": torch.zeros(2, 2)}, str(path))
    return path


def _for_another_model(path: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(ADAPTER), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    metadata[BASE_FINGERPRINT_KEY] = "sha256:" + "0" * 64
    save_file(load_file(str(ADAPTER)), str(path), metadata=metadata)
    return path


@pytest.mark.parametrize(
    ("make", "name", "says"),
    [
        (lambda p: p, "missing.safetensors", "no LoRA adapter file"),
        (lambda p: p.write_bytes(b"pickle") and p, "style.ckpt", "must be .safetensors"),
        (lambda p: p.write_bytes(b"not safetensors") and p, "junk.safetensors", "readable"),
        (_not_a_lora, "plain.safetensors", "holds no LoRA weights"),
        (_for_another_model, "other.safetensors", "was trained for the model sha256:0000"),
    ],
)
def test_it_refuses_an_adapter_that_cannot_work_naming_the_field(
    tmp_path: Path, make: object, name: str, says: str
) -> None:
    path = make(tmp_path / name)  # type: ignore[operator]
    with pytest.raises(ModelReferenceError, match=says) as caught:
        check_adapter(tmp_path / name, model_fingerprint(BASE))
    assert caught.value.field == "lora_adapters"
    assert path is not None


def test_an_adapter_whose_shapes_do_not_fit_the_unet_is_refused_naming_the_file(
    tmp_path: Path, plain: Renderer
) -> None:
    from safetensors.torch import load_file

    # Given an adapter without the base fingerprint (trained elsewhere) whose matrices are
    # the wrong size for this UNet
    tensors = {key: torch.zeros(*value.shape[:-1], 3) for key, value in load_file(ADAPTER).items()}
    bad = tmp_path / "elsewhere.safetensors"
    save_file(tensors, str(bad))
    check_adapter(bad, model_fingerprint(BASE))  # nothing in the header to refuse it by
    renderer = Renderer(BASE, device="cpu")
    with pytest.raises(ModelReferenceError, match=r"elsewhere\.safetensors does not fit") as caught:
        apply_adapters(renderer.pipe, [(bad, 1.0)])
    assert caught.value.field == "lora_adapters"
    # And the renderer is left as it was: it renders the base model's image
    captions, _ = _captions(2)
    assert _render(renderer, captions) == _render(plain, captions)


def test_train_lora_is_deterministic_and_writes_what_a_collection_names(tmp_path: Path) -> None:
    runs = []
    for name in ("one", "two"):
        out = io.StringIO()
        call_command(
            "train_lora",
            "--out",
            str(tmp_path / name),
            "--steps",
            "3",
            "--images",
            "64",
            "--evaluate",
            "0",
            stdout=out,
        )
        assert "fingerprint sha256:" in out.getvalue()
        runs.append(tmp_path / name / STYLE)
    assert (runs[0] / WEIGHT_NAME).read_bytes() == (runs[1] / WEIGHT_NAME).read_bytes()
    check_adapter(runs[0] / WEIGHT_NAME, model_fingerprint(BASE))
    record = json.loads((runs[0] / TRAINING_RECORD).read_text())
    assert record["training"]["steps"] == 3 and record["base_fingerprint"] == model_fingerprint(
        BASE
    )


def test_train_lora_clip_trains_a_gate_clip_that_learned_the_style(tmp_path: Path) -> None:
    from django.core.management import CommandError

    # Without the adapter there is nothing to sample: the error says what to train first
    with pytest.raises(CommandError, match="train it first"):
        call_command("train_lora", "--clip", "--out", str(tmp_path), "--evaluate", "0")
    folder = tmp_path / STYLE
    folder.mkdir()
    (folder / WEIGHT_NAME).symlink_to(ADAPTER)
    (folder / STYLE_DIR).symlink_to(ADAPTER_DIR / STYLE_DIR)
    out = io.StringIO()
    call_command(
        "train_lora", "--clip", "--out", str(tmp_path), "--steps", "3", "--images", "32",
        "--samples", "2", "--evaluate", "2", stdout=out,
    )  # fmt: skip
    # A CLIP the gate loads, trained on the style's prompt and the adapter's samples
    scorer = get_scorer(folder / "clip", device="cpu")
    assert len(scorer.score(Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE)), ["a"])) == 1
    record = json.loads((folder / "clip" / CLIP_RECORD).read_text())
    assert record["training"]["styles"] == [STYLE]
    assert record["adapter_fingerprints"] == {STYLE: adapter_fingerprint(ADAPTER)}
    # and the measurement says how the style prompt sorts renders with and without the adapter
    assert "renders without the adapter and accepts" in out.getvalue()
