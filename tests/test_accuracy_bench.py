"""``manage.py bench_accuracy``'s parts: the wrong images it makes, its confusion arithmetic, and
a tiny run on the untrained reference models (the figures mean nothing there; the shape of the
report and the pipeline's bookkeeping do). No timing is asserted."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from devtools import accuracy_bench, adversarial_images
from devtools.accuracy_bench import BLANK, DUPLICATE, OFF_STYLE, RENDER, Case, confusion
from generation.clip_gate import pixel_std
from generation.reference_world.oracle import read_traits
from generation.reference_world.world import draw, world_traits

LAST_LINE = re.compile(
    r"^gate: published trait accuracy (\d\.\d{3}) \(gate off (\d\.\d{3})\), "
    r"false accepts (\d\.\d{3}|-), false rejects (\d\.\d{3}|-)$"
)
VERIFIED = ["shape", "colour"]


@pytest.mark.parametrize(
    "maker",
    [
        *adversarial_images.OFF_STYLE.values(),
        *adversarial_images.BLANK.values(),
        *adversarial_images.NOISE.values(),
    ],
)
def test_no_wrong_image_reads_as_a_world_image(maker: Any) -> None:
    rng = np.random.default_rng(7)
    for _ in range(5):
        image = maker(64, rng)
        assert image.size == (64, 64) and image.mode == "RGB"
        assert set(read_traits(image).traits.values()) == {None}


def channel_std(image: Image.Image) -> float:
    return float(np.asarray(image, dtype=float).reshape(-1, 3).std(axis=0).max())


def test_blank_images_are_one_colour_and_the_others_are_not() -> None:
    rng = np.random.default_rng(8)
    for maker in adversarial_images.BLANK.values():
        assert all(channel_std(maker(64, rng)) < 2.0 for _ in range(10))
    for maker in [*adversarial_images.OFF_STYLE.values(), *adversarial_images.NOISE.values()]:
        assert all(channel_std(maker(64, rng)) >= 2.0 for _ in range(10))
    # the gate's blank check measures each channel around its own mean, so a flat colour is as
    # blank to it as a flat grey, and the gate's measure agrees with this test's on every image
    grey = Image.new("RGB", (64, 64), (90, 90, 90))
    red = Image.new("RGB", (64, 64), (200, 40, 40))
    assert pixel_std(grey) == pixel_std(red) == 0.0
    for maker in adversarial_images.BLANK.values():
        assert pixel_std(maker(64, rng)) < 2.0
    for maker in [*adversarial_images.OFF_STYLE.values(), *adversarial_images.NOISE.values()]:
        assert pixel_std(maker(64, rng)) >= 2.0


def test_near_duplicates_are_near_but_not_the_same() -> None:
    seed = b"duplicate"
    original = draw(world_traits(seed), seed)
    pixels = np.asarray(original, dtype=int)
    rng = np.random.default_rng(9)
    assert np.array_equal(np.asarray(adversarial_images.exact_copy(original, rng)), pixels)
    for name in ("shifted 1-2 px", "jittered ±4", "brightness ±5%"):
        copy = np.asarray(adversarial_images.DUPLICATES[name](original, rng), dtype=int)
        assert copy.shape == pixels.shape
        assert not np.array_equal(copy, pixels), name
    jittered = np.asarray(adversarial_images.jittered(original, rng), dtype=int)
    assert np.abs(jittered - pixels).max() <= 4
    # the oracle still reads the copy's traits: it is the same picture
    assert read_traits(adversarial_images.shifted(original, rng)).traits == (
        read_traits(original).traits
    )


def test_truth_follows_the_oracle_and_the_kind() -> None:
    assigned = {"shape": "circle", "colour": "red"}
    right = {"shape": "circle", "colour": "red", "edition": "common"}
    truth = accuracy_bench.truth_for(RENDER, right, assigned, VERIFIED)
    assert all(truth.values())
    truth = accuracy_bench.truth_for(RENDER, {**right, "colour": "blue"}, assigned, VERIFIED)
    assert not truth["trait:colour"] and truth["trait:shape"] and truth["style"]
    unreadable = dict.fromkeys(right)
    truth = accuracy_bench.truth_for(RENDER, unreadable, assigned, VERIFIED)
    assert not truth["style"] and not truth["trait:shape"]
    assert not accuracy_bench.truth_for(BLANK, unreadable, assigned, VERIFIED)["blank"]
    assert not accuracy_bench.truth_for(OFF_STYLE, right, assigned, VERIFIED)["style"]
    truth = accuracy_bench.truth_for(DUPLICATE, right, assigned, VERIFIED)
    assert truth["style"] and truth["trait:shape"] and not truth["uniqueness"]


def test_confusion_counts_accepts_and_rejects_against_the_truth() -> None:
    def case(passed: bool, good: bool, style: bool) -> Case:
        return Case("s", "honest", {"style": style}, {"style": good, "blank": True}, passed)

    cases = [
        case(True, True, True),  # true accept
        case(True, True, True),  # true accept
        case(True, False, True),  # false accept
        case(False, True, True),  # false reject (of the gate; style passed it)
        case(False, False, False),  # true reject
    ]
    whole = confusion(cases)
    assert (whole.ta, whole.fa, whole.tr, whole.fr) == (2, 1, 1, 1)
    assert whole.precision == pytest.approx(2 / 3)
    assert whole.recall == pytest.approx(2 / 3)
    assert whole.false_accept_rate == pytest.approx(1 / 2)
    assert whole.false_reject_rate == pytest.approx(1 / 3)
    style = confusion(cases, "style")
    assert (style.ta, style.fa, style.tr, style.fr) == (3, 1, 1, 0)
    assert confusion(cases, "uniqueness").n == 0
    assert confusion([]).precision is None


def test_a_missed_category_says_how_many_in_between_renders_the_gate_refused() -> None:
    """The note under a missed category counts the honest renders whose category alone the
    oracle cannot tell (in-between drawings) and how many of them the gate refused."""

    def render(passed: bool, unread: tuple[str, ...]) -> Case:
        good = not unread
        return Case(RENDER, "honest", {"trait:shape": passed}, {"trait:shape": good}, passed,
                    unread=unread)  # fmt: skip

    run = accuracy_bench.Run(verified=["shape"])
    run.cases = [
        render(True, ()),
        render(False, ("shape",)),
        render(True, ("shape",)),
        render(True, ("shape",)),
        render(False, ("shape", "colour")),  # more than the shape unread: not counted
    ]
    h = {"on": {"shape": 0.97}, "off": {"shape": 0.98}, "false_accepts": 0.0,
         "false_rejects": 0.0}  # fmt: skip
    targets = [("accuracy", "0.970", False)] + [("other", "-", True)] * 4
    (note,) = accuracy_bench._limit_notes(run, h, targets)
    assert note.startswith("- shape: published 0.970 < 0.99")
    assert "the gate refused 1 of the 3 honest renders whose shape alone the oracle cannot" in note


def test_last_line_has_the_issues_format() -> None:
    line = accuracy_bench.last_line(0.99, 0.5, 0.0123, None)
    assert line == (
        "gate: published trait accuracy 0.990 (gate off 0.500), false accepts 0.012, "
        "false rejects -"
    )
    assert LAST_LINE.match(line)


@pytest.mark.django_db
def test_a_tiny_run_on_the_untrained_models_reports_every_token_and_writes_the_doc(
    reference_models: Path, tmp_path: Path, settings: Any
) -> None:
    run = accuracy_bench.run_accuracy_bench(
        tokens=4,
        wrong=2,
        models=reference_models,
        calibration_samples=3,
        timing_tokens=1,
        limit_images=8,
        fresh_database=False,
        race_pairs=0,  # its tokens must be committed: test_copies_rendered_at_the_same_moment…
    )
    # every token went through the render stage and ended published or waiting for review
    assert len(run.attempts) == 4
    assert sum(run.statuses.values()) == 4
    assert set(run.statuses) <= {"RENDERED", "NEEDS_REVIEW"}
    assert all(1 <= a <= run.collection["max_attempts"] for a in run.attempts)
    honest = [c for c in run.cases if c.group == "honest"]
    assert len(honest) == sum(run.attempts)  # every attempt re-gated and judged
    sources = {c.source for c in run.cases}
    assert "noise: uniform noise" in sources and "blank: flat" in sources
    # untrained models draw noise: the oracle reads no trait in any first render
    assert not any(any(v) for v in run.first_right.values())
    lines = accuracy_bench.report(run)
    assert LAST_LINE.match(lines[-1])
    assert any(line.startswith("| **all checks (the gate)** | wrong |") for line in lines)
    written = accuracy_bench.write_report(tmp_path / "accuracy.md", run, lines, "bench")
    assert [p.name for p in written] == [
        "accuracy.md",
        "accuracy-grid.png",
        "accuracy-tradeoff.png",
    ]
    for png in written[1:]:
        with Image.open(png) as image:
            assert image.width > 100
    assert lines[-1] in (tmp_path / "accuracy.md").read_text()


@pytest.mark.django_db(transaction=True)
def test_copies_rendered_at_the_same_moment_by_two_workers_are_counted_as_duplicates(
    reference_models: Path,
) -> None:
    """The bench's race: each pair of tokens renders one image in two threads at once; the
    gate must refuse the later copy, so no pair counts as a false accept, and each pair is one
    wrong image of the duplicate kind in the report."""
    from generation.models import Token
    from generation.pipeline import run_render
    from tests.test_near_duplicates import make_token

    tokens = [
        make_token(reference_models, "race-bench", i, seed="0x" + f"{i:02x}" * 32) for i in (1, 2)
    ]
    for token in tokens:
        assert run_render(token.pk) == Token.Status.RENDERED
        token.refresh_from_db()
    run = accuracy_bench.Run(verified=[])
    accuracy_bench._race(run, tokens[0].collection, tokens, 2)
    assert [c.source for c in run.cases] == [accuracy_bench.RACE_SOURCE] * 2
    assert not any(c.passed for c in run.cases)
    race = Token.objects.filter(collection__slug="race-bench-race")
    # each pair: one accepted at its first attempt, the other refused it as a near duplicate
    assert sorted(t.attempt for t in race) == [0, 0, 1, 1]
    assert confusion(run.cases, "uniqueness").false_accept_rate == 0.0
