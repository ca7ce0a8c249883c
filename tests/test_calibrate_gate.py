"""``manage.py calibrate_gate`` on the reference models: a proposal that holds on its samples."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from generation.models import Collection

pytestmark = pytest.mark.django_db

RARITY = {
    "mode": "weighted",
    "categories": [
        {
            "name": "animal",
            "verify": True,
            "options": [
                {"name": "fox", "prompt": "a red fox", "weight": 2},
                {"name": "whale", "prompt": "a blue whale", "weight": 1},
                {"name": "robot", "prompt": "a robot", "weight": 1},
            ],
        }
    ],
}


@pytest.fixture
def collection(reference_models: Path) -> Collection:
    return Collection.objects.create(
        slug="calib",
        name="Calibration",
        chain_id=31337,
        contract_address="0x" + "ca" * 20,
        model_dir=str(reference_models / "diffusion"),
        clip_dir=str(reference_models / "clip"),
        prompt_template="an abstract painting of {animal}, token {token_id}",
        style_prompt="an abstract painting",
        clip_threshold=0.0,
        steps=2,
        width=64,
        height=64,
        rarity=RARITY,
        trait_margin=0.0,
        uniqueness_threshold=0.99,
    )


def calibrate(slug: str, *extra: str) -> dict[str, Any]:
    buf = io.StringIO()
    call_command(
        "calibrate_gate", slug, "--samples", "6", "--device", "cpu", "--json", *extra, stdout=buf
    )
    return json.loads(buf.getvalue())


def style_acceptance(result: dict[str, Any]) -> float:
    scores = [s["scores"]["style"] for s in result["samples"] if not s["blank"]]
    threshold = result["proposal"]["clip_threshold"]
    return sum(score >= threshold for score in scores) / len(scores)


def test_it_proposes_thresholds_that_hold_on_the_samples_and_replays(
    collection: Collection, settings: Any, tmp_path: Path
) -> None:
    settings.RENDER_CACHE_DIR = tmp_path / "first"
    result = calibrate(collection.slug, "--target-acceptance", "0.5")
    assert result["sample_count"] == 6 and len(result["samples"]) == 6
    assert result["blank_samples"] == 0
    assert result["frozen"] is False
    assert len({s["seed"] for s in result["samples"]}) == 6
    # The proposal discriminates: at least half pass, not all.
    assert 0.5 <= style_acceptance(result) < 1.0
    assert result["statistics"]["style"]["acceptance_proposed"] == style_acceptance(result)
    # The trait check is scored for the verified category, with its ranked-first count.
    margin = result["statistics"]["trait:animal:margin"]
    margins = [s["scores"]["trait:animal:margin"] for s in result["samples"]]
    assert margin["n"] == 6 and margin["ranked_first"] == sum(m > 0 for m in margins)
    assert result["proposal"]["trait_margin"] >= 0.0
    # Uniqueness: every sample after the first has a nearest earlier sample; most are below.
    similarities = [s["scores"]["uniqueness_max"] for s in result["samples"][1:]]
    assert "uniqueness_max" not in result["samples"][0]["scores"]
    assert sum(v < result["proposal"]["uniqueness_threshold"] for v in similarities) >= 0.5 * 5
    # The prompts carry the drawn traits.
    fragments = {"fox": "a red fox", "whale": "a blue whale", "robot": "a robot"}
    for sample in result["samples"]:
        assert fragments[sample["traits"]["animal"]] in sample["prompt"]

    # Deterministic: rendered again from scratch (a fresh render cache), the same proposal.
    settings.RENDER_CACHE_DIR = tmp_path / "second"
    again = calibrate(collection.slug, "--target-acceptance", "0.5")
    assert again["proposal"] == result["proposal"]
    assert again["samples"] == result["samples"]

    # The default target (0.9) over the same (now cached) samples lets at least 90% through.
    default = calibrate(collection.slug)
    assert default["target_acceptance"] == 0.9
    assert style_acceptance(default) >= 0.9
    assert default["collection"] == "calib"


def test_the_table_says_what_the_proposal_is_for(collection: Collection) -> None:
    Collection.objects.filter(pk=collection.pk).update(config_digest="0x" + "ab" * 32)
    buf = io.StringIO()
    call_command("calibrate_gate", "calib", "--samples", "3", "--device", "cpu", stdout=buf)
    text = buf.getvalue()
    assert "statistic" in text and "acc@proposed" in text
    assert "style" in text and "trait:animal:margin" in text and "uniqueness_max" in text
    assert "CLIP score scales differ between backbones" in text
    assert "frozen" in text and "next collection" in text


def test_an_unknown_slug_names_the_known_ones(collection: Collection) -> None:
    with pytest.raises(CommandError, match=r"unknown collection 'nope'.*calib"):
        call_command("calibrate_gate", "nope", "--samples", "6")


def test_fewer_than_two_samples_is_refused(collection: Collection) -> None:
    with pytest.raises(CommandError, match="at least 2"):
        call_command("calibrate_gate", collection.slug, "--samples", "1")


def test_style_images_get_a_proposal_of_their_own(
    collection: Collection, settings: Any, tmp_path: Path, reference_models: Path
) -> None:
    from generation.reference_world.collection import write_style_images

    settings.MODEL_ROOTS = [reference_models, tmp_path]  # the test's images are allowed
    images = [str(path) for path in write_style_images(tmp_path)[:4]]
    Collection.objects.filter(pk=collection.pk).update(
        style_images=images, style_images_threshold=0.99
    )
    result = calibrate(collection.slug, "--target-acceptance", "0.5")
    values = [sample["scores"]["style_images"] for sample in result["samples"]]
    proposed = result["proposal"]["style_images_threshold"]
    assert proposed == sorted(values)[len(values) - 3]  # the 3rd highest of 6: half pass
    assert result["statistics"]["style_images"]["acceptance_proposed"] >= 0.5
    assert result["current"]["style_images_threshold"] == 0.99


def test_the_reference_world_is_calibrated_without_a_collection_row() -> None:
    with pytest.raises(CommandError, match="not both"):
        call_command("calibrate_gate", "calib", "--reference-world", "--samples", "2")
    with pytest.raises(CommandError, match="--reference-world"):
        call_command("calibrate_gate", "--samples", "2")


def test_a_styled_reference_world_is_calibrated_with_its_adapter_and_style_clip() -> None:
    from generation.reference_world.collection import STYLED_GATES

    with pytest.raises(CommandError, match="--style goes with --reference-world"):
        call_command("calibrate_gate", "calib", "--style", "top-left", "--samples", "2")
    with pytest.raises(CommandError, match="--style: style 'sepia' is not one of"):
        call_command("calibrate_gate", "--reference-world", "--style", "sepia", "--samples", "2")
    out = io.StringIO()
    call_command(
        "calibrate_gate", "--reference-world", "--style", "top-left", "--samples", "3", "--json",
        stdout=out,
    )  # fmt: skip
    result = json.loads(out.getvalue())
    # the current thresholds are the styled gate's, the style score its prompt's
    assert result["current"]["clip_threshold"] == STYLED_GATES["top-left"].clip_threshold
    assert result["statistics"]["style"]["min"] >= STYLED_GATES["top-left"].clip_threshold


def test_it_proposes_a_near_duplicate_threshold_that_catches_the_samples_copies(
    collection: Collection, settings: Any, tmp_path: Path
) -> None:
    settings.RENDER_CACHE_DIR = tmp_path / "renders"
    result = calibrate(collection.slug, "--target-acceptance", "0.6")
    samples = result["samples"]
    assert "near_duplicate_min" not in samples[0]["scores"]  # nothing earlier to compare with
    distances = sorted(s["scores"]["near_duplicate_min"] for s in samples[1:])
    copies = [s["scores"]["copy_max"] for s in samples]
    proposed = result["proposal"]["near_duplicate_threshold"]
    # every sample's copies (shifted, jittered, brightness and contrast ±10%) are caught
    assert max(copies) < proposed
    # and at least the target share of the samples pass: the 0.4 quantile of 5, just below it
    assert proposed == round(max(distances[5 - 3] - 1e-6, max(copies) + 1e-6), 6)
    assert sum(d > proposed for d in distances) >= 3
    stats = result["statistics"]["near_duplicate_min"]
    assert (
        stats["n"] == 5 and stats["acceptance_proposed"] == sum(d > proposed for d in distances) / 5
    )
    assert result["statistics"]["copy_max"]["acceptance_proposed"] == 0.0
    assert result["current"]["near_duplicate_threshold"] is None

    buf = io.StringIO()
    call_command("calibrate_gate", collection.slug, "--samples", "6", "--device", "cpu", stdout=buf)
    text = buf.getvalue()  # the default target (0.9), its own proposal
    assert "near_duplicate_min" in text and "copy_max" in text
    assert "near_duplicate_threshold = 0." in text


def test_copies_win_when_honest_samples_are_nearer_than_copies() -> None:
    # a model that draws nearly the same image every time: the acceptance quantile (0.001)
    # would let a brightened copy (0.004) through, so the proposal is raised above the copies
    from generation.management.commands.calibrate_gate import Command

    scored = [{"style": 0.5, "copy_max": 0.004}] + [
        {"style": 0.5, "near_duplicate_min": d, "copy_max": 0.003}
        for d in (0.001, 0.002, 0.02, 0.03, 0.04)
    ]
    collection = Collection(slug="near", near_duplicate_threshold=None)
    stats: dict[str, Any] = {}
    notes: list[str] = []
    proposed = Command()._propose_near_duplicates(collection, scored, 0.9, stats, notes)
    assert proposed == 0.004001
    assert stats["near_duplicate_min"]["acceptance_proposed"] == 0.6
    (note,) = notes
    assert "would let copies through" in note and "0.004001" in note
    # with honest samples far apart, the quantile stands
    far = [{**row, "near_duplicate_min": row.get("near_duplicate_min", 0) + 0.1} for row in scored]
    far[0].pop("near_duplicate_min")
    assert Command()._propose_near_duplicates(collection, far, 0.9, {}, []) == 0.100999
