"""The CLIP gate's scoring logic on the reference models (no database).

The reference CLIP model is tiny and untrained: its similarities are arbitrary but
deterministic. No test here assumes that a prompt "means" anything to it. Every expectation is
derived from numbers measured in the test itself (which option ranks first, how far apart two
images are), and the test asserts the ordering it relies on before using it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.clip_gate import (
    ClipScorer,
    TraitCheck,
    check_image,
    embedding_from_bytes,
    embedding_to_bytes,
    get_scorer,
    pixel_std,
    stack_embeddings,
)
from generation.rendering import Renderer, RenderParams, get_renderer

STYLE = "an oil painting"
FOX_PROMPT = "a red fox in a birch forest"
WHALE_PROMPT = "a blue whale in the deep ocean"
# Candidate option prompts for the trait tests. Which of them the untrained model prefers for
# a given image is measured, never assumed.
CANDIDATES = {
    "fox": "a fox",
    "whale": "a whale",
    "crown": "a crown",
    "cat": "a cat",
    "robot": "a robot",
    "red-hat": "a red hat",
    "blue-hat": "a blue hat",
    "green-hat": "a green hat",
}
CATEGORY = {k: CANDIDATES[k] for k in ("fox", "robot", "red-hat")}


def params(prompt: str) -> RenderParams:
    return RenderParams(
        prompt=prompt, negative_prompt="", steps=2, guidance=7.5, width=64, height=64
    )


@pytest.fixture(scope="module")
def scorer(reference_models: Path) -> ClipScorer:
    return get_scorer(reference_models / "clip", device="cpu")


@pytest.fixture(scope="module")
def renderer(reference_models: Path) -> Renderer:
    return get_renderer(reference_models / "diffusion", device="cpu")


@pytest.fixture(scope="module")
def fox(renderer: Renderer) -> Image.Image:
    return renderer.render(params(FOX_PROMPT), bytes.fromhex("a1" * 32), 0)


@pytest.fixture(scope="module")
def whale(renderer: Renderer) -> Image.Image:
    return renderer.render(params(WHALE_PROMPT), bytes.fromhex("b0" * 32), 0)


def ranking(scorer: ClipScorer, image: Image.Image, options: dict[str, str]) -> list[str]:
    """Option names, best first, by the scorer's (rounded) similarity to ``image``."""
    scores = dict(zip(options, scorer.score(image, list(options.values())), strict=True))
    return sorted(scores, key=lambda name: -scores[name])


# --- blank images -------------------------------------------------------------------------


@pytest.mark.parametrize("colour", [(0, 0, 0), (128, 128, 128)], ids=["black", "grey"])
def test_it_fails_a_flat_image_as_blank_whatever_the_thresholds(
    scorer: ClipScorer, colour: tuple[int, int, int]
) -> None:
    image = Image.new("RGB", (64, 64), colour)
    calls = scorer.image_encoder_calls
    result = check_image(
        scorer,
        image,
        STYLE,
        -1.0,
        traits=[TraitCheck("animal", "fox", CATEGORY)],
        earlier=np.zeros((0, 0), dtype=np.float32),
        uniqueness_threshold=1.0,
    )
    assert not result.passed
    assert result.reasons == [
        "blank or near-constant image (spread around its mean colour 0.000000)"
    ]
    assert result.scores == {"blank_std": 0.0}
    assert result.thresholds == {"blank_std": 2.0}
    assert result.embedding is None
    # Decided before anything else: the image never reached the CLIP model.
    assert scorer.image_encoder_calls == calls


def test_it_fails_a_near_constant_image_and_honours_blank_std(scorer: ClipScorer) -> None:
    noise = np.random.default_rng(0).integers(-1, 2, size=(64, 64, 3))
    image = Image.fromarray((128 + noise).astype(np.uint8))
    std = pixel_std(image)
    assert 0.0 < std < 2.0
    result = check_image(scorer, image, STYLE, -1.0)
    assert not result.passed
    assert result.reasons == [
        f"blank or near-constant image (spread around its mean colour {std:.6f})"
    ]
    assert check_image(scorer, image, STYLE, -1.0, blank_std=std / 2).passed


@pytest.mark.parametrize(
    "fill",
    [
        pytest.param(np.full((64, 64, 3), (200, 30, 30)), id="a flat red"),
        pytest.param(
            np.full((64, 64, 3), (30, 90, 200))
            + np.random.default_rng(1).integers(-2, 3, (64, 64, 3)),
            id="a faint texture on a flat blue",
        ),
    ],
)
def test_it_fails_a_flat_colour_fill_as_blank(scorer: ClipScorer, fill: np.ndarray) -> None:
    # the channels differ a lot from each other (std of all values together: 79 for the red),
    # but each is flat: a fill, not a picture
    image = Image.fromarray(fill.astype(np.uint8))
    assert float(np.asarray(image, dtype=np.float64).std()) > 40
    calls = scorer.image_encoder_calls
    result = check_image(scorer, image, STYLE, -1.0)
    assert not result.passed
    (reason,) = result.reasons
    assert reason.startswith("blank or near-constant image (spread around its mean colour")
    assert result.scores["blank_std"] < 2.0 and result.thresholds == {"blank_std": 2.0}
    assert scorer.image_encoder_calls == calls  # decided before the CLIP model ran


def test_a_world_render_is_not_blank(world_renders: list[Image.Image]) -> None:
    # honest renders of the committed world model spread 13.6 or more (1,000 renders)
    assert min(pixel_std(image) for image in world_renders) > 5 * 2.0


# --- style, backward compatibility -----------------------------------------------------


def test_it_passes_a_real_render_with_the_positional_call_of_today(
    scorer: ClipScorer, fox: Image.Image
) -> None:
    result = check_image(scorer, fox, STYLE, -1.0)
    assert result.passed and result.reasons == []
    # A normal image's scores keep exactly the keys they had (the API and provenance show them).
    assert result.scores == {"style": scorer.score(fox, [STYLE])[0]}
    assert result.thresholds == {"style": -1.0}
    assert result.pixel_std is not None and result.pixel_std > 2.0
    json.dumps({"scores": result.scores, "thresholds": result.thresholds})
    assert result.embedding is not None
    assert result.embedding.dtype == np.float32 and result.embedding.ndim == 1
    assert np.linalg.norm(result.embedding) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(result.embedding, scorer.image_embedding(fox))


def test_it_fails_style_at_a_threshold_above_the_measured_score(
    scorer: ClipScorer, fox: Image.Image
) -> None:
    measured = check_image(scorer, fox, STYLE, -1.0).scores["style"]
    assert check_image(scorer, fox, STYLE, measured).passed  # at the threshold passes
    result = check_image(scorer, fox, STYLE, measured + 1e-3)
    assert not result.passed
    [reason] = result.reasons
    assert f"{measured:.6f}" in reason and STYLE in reason


# --- uniqueness ---------------------------------------------------------------------------


def test_it_fails_a_duplicate_and_passes_a_different_render(
    scorer: ClipScorer, fox: Image.Image, whale: Image.Image
) -> None:
    first = check_image(scorer, fox, STYLE, -1.0)
    assert first.embedding is not None
    # The caller stores the embedding as bytes and reads the collection back as a matrix.
    earlier = stack_embeddings([embedding_to_bytes(first.embedding)])
    assert earlier.shape == (1, first.embedding.shape[0])

    duplicate_sim = float(np.max(earlier @ scorer.image_embedding(fox.copy())))
    other_sim = float(np.max(earlier @ scorer.image_embedding(whale)))
    # Measured, not assumed: the untrained model maps all renders close together (about
    # 0.99 apart here), but an identical image is closer still.
    assert other_sim < duplicate_sim
    threshold = (other_sim + duplicate_sim) / 2

    dup = check_image(
        scorer, fox.copy(), STYLE, -1.0, earlier=earlier, uniqueness_threshold=threshold
    )
    assert not dup.passed
    [reason] = dup.reasons
    assert f"{dup.scores['uniqueness_max']:.6f}" in reason
    assert f"{dup.thresholds['uniqueness_max']:.6f}" in reason
    assert dup.scores["uniqueness_max"] == pytest.approx(duplicate_sim, abs=1e-6)

    other = check_image(scorer, whale, STYLE, -1.0, earlier=earlier, uniqueness_threshold=threshold)
    assert other.passed, other.reasons
    assert other.scores["uniqueness_max"] == pytest.approx(other_sim, abs=1e-6)


def test_it_skips_uniqueness_without_earlier_tokens_or_threshold(
    scorer: ClipScorer, fox: Image.Image
) -> None:
    embedding = scorer.image_embedding(fox)[None, :]
    for earlier, threshold in [(stack_embeddings([]), 0.5), (None, 0.5), (embedding, None)]:
        result = check_image(
            scorer, fox, STYLE, -1.0, earlier=earlier, uniqueness_threshold=threshold
        )
        assert result.passed and "uniqueness_max" not in result.scores


def test_it_refuses_earlier_embeddings_of_the_wrong_width(
    scorer: ClipScorer, fox: Image.Image
) -> None:
    with pytest.raises(ValueError, match="earlier embeddings"):
        check_image(
            scorer, fox, STYLE, -1.0, earlier=np.ones((2, 3), np.float32), uniqueness_threshold=0.5
        )


# --- traits -------------------------------------------------------------------------------


def test_it_passes_only_the_option_that_ranks_first(scorer: ClipScorer, fox: Image.Image) -> None:
    order = ranking(scorer, fox, CATEGORY)
    winner = order[0]
    scores = dict(zip(CATEGORY, scorer.score(fox, list(CATEGORY.values())), strict=True))
    assert scores[order[0]] > scores[order[1]]  # a strict winner, measured

    passed = check_image(scorer, fox, STYLE, -1.0, traits=[TraitCheck("animal", winner, CATEGORY)])
    assert passed.passed, passed.reasons
    assert passed.scores["trait:animal"] == scores[winner]
    assert passed.scores["trait:animal:margin"] == pytest.approx(
        scores[order[0]] - scores[order[1]], abs=2e-6
    )
    assert passed.thresholds["trait:animal:margin"] == 0.0

    for other in order[1:]:
        failed = check_image(
            scorer, fox, STYLE, -1.0, traits=[TraitCheck("animal", other, CATEGORY)]
        )
        assert not failed.passed
        [reason] = failed.reasons
        for part in ("animal", repr(other), repr(winner)):
            assert part in reason
        assert f"{scores[other]:.6f}" in reason and f"{scores[winner]:.6f}" in reason
        assert failed.scores["trait:animal"] == scores[other]
        assert failed.scores["trait:animal:margin"] < 0


def test_it_fails_the_winner_when_the_margin_exceeds_its_lead(
    scorer: ClipScorer, fox: Image.Image
) -> None:
    winner = ranking(scorer, fox, CATEGORY)[0]
    trait = [TraitCheck("animal", winner, CATEGORY)]
    gap = check_image(scorer, fox, STYLE, -1.0, traits=trait).scores["trait:animal:margin"]
    assert gap > 0
    assert check_image(scorer, fox, STYLE, -1.0, traits=trait, trait_margin=gap).passed
    failed = check_image(scorer, fox, STYLE, -1.0, traits=trait, trait_margin=gap + 1e-3)
    assert not failed.passed
    [reason] = failed.reasons
    assert "margin" in reason and repr(winner) in reason and f"{gap:.6f}" in reason


def test_it_catches_an_image_rendered_from_another_tokens_prompt(
    scorer: ClipScorer, fox: Image.Image, whale: Image.Image
) -> None:
    """Two renders from two prompts, each checked against the trait the other one won.

    The untrained model does not know what a fox or a whale is, and its renders all lie close
    together, so the options' prompts cannot be the semantic ones: the option set is *found* by
    measuring, among the candidate prompts, three on which the two images disagree about the
    winner (the reference model is deterministic, so the search always gives the same set).
    What the test then shows is the gate logic a real model would exercise: an image rendered
    from another token's prompt fails that token's trait check, naming the option it won.
    """
    found = None
    for names in itertools.combinations(CANDIDATES, 3):
        options = {n: CANDIDATES[n] for n in names}
        fox_order, whale_order = ranking(scorer, fox, options), ranking(scorer, whale, options)
        if fox_order[0] != whale_order[0]:
            found = options, fox_order[0], whale_order[0]
            break
    assert found is not None, "the reference model ranks every option set the same for both"
    options, fox_wins, whale_wins = found

    assert check_image(
        scorer, fox, STYLE, -1.0, traits=[TraitCheck("kind", fox_wins, options)]
    ).passed
    assert check_image(
        scorer, whale, STYLE, -1.0, traits=[TraitCheck("kind", whale_wins, options)]
    ).passed
    swapped = check_image(
        scorer, whale, STYLE, -1.0, traits=[TraitCheck("kind", fox_wins, options)]
    )
    assert not swapped.passed
    [reason] = swapped.reasons
    assert repr(fox_wins) in reason and repr(whale_wins) in reason


def test_it_reports_every_failing_check(scorer: ClipScorer, fox: Image.Image) -> None:
    loser = ranking(scorer, fox, CATEGORY)[-1]
    result = check_image(
        scorer,
        fox,
        STYLE,
        1.0,
        traits=[TraitCheck("animal", loser, CATEGORY)],
        earlier=scorer.image_embedding(fox)[None, :],
        uniqueness_threshold=0.5,
    )
    assert not result.passed
    assert [r.split(" ", 1)[0] for r in result.reasons] == ["style", "trait", "uniqueness:"]
    assert set(result.scores) == {
        "style",
        "trait:animal",
        "trait:animal:margin",
        "uniqueness_max",
    }
    json.dumps(result.scores), json.dumps(result.thresholds)


def test_it_refuses_a_trait_check_it_cannot_decide(scorer: ClipScorer, fox: Image.Image) -> None:
    with pytest.raises(ValueError, match="not one of"):
        check_image(scorer, fox, STYLE, -1.0, traits=[TraitCheck("animal", "owl", CATEGORY)])
    with pytest.raises(ValueError, match="at least two options"):
        check_image(
            scorer, fox, STYLE, -1.0, traits=[TraitCheck("animal", "fox", {"fox": "a fox"})]
        )


# --- embeddings storage and the text cache ------------------------------------------------


def test_it_round_trips_an_embedding_through_bytes(scorer: ClipScorer, fox: Image.Image) -> None:
    v = scorer.image_embedding(fox)
    blob = embedding_to_bytes(v)
    assert len(blob) == 4 * v.shape[0]
    np.testing.assert_array_equal(np.frombuffer(blob, dtype="<f4"), v)  # documented layout
    back = embedding_from_bytes(blob)
    assert back.dtype == np.float32 and back.flags.writeable
    np.testing.assert_array_equal(back, v)
    matrix = stack_embeddings([blob, embedding_to_bytes(-v)])
    assert matrix.shape == (2, v.shape[0]) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[1], -v)
    assert stack_embeddings([]).shape == (0, 0)
    with pytest.raises(ValueError):
        stack_embeddings([blob, blob[:-4]])
    with pytest.raises(ValueError):
        embedding_from_bytes(b"\x00" * 5)


def test_it_caches_text_embeddings(scorer: ClipScorer, fox: Image.Image) -> None:
    texts = ["cache probe one", "cache probe two", "cache probe one"]
    before = scorer.text_encoder_calls
    first = scorer.text_embeddings(texts)
    assert scorer.text_encoder_calls - before == 2  # the repeated prompt is encoded once
    assert first.shape == (3, first.shape[1]) and first.dtype == np.float32
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)

    again = scorer.text_embeddings(texts)
    assert scorer.text_encoder_calls - before == 2
    np.testing.assert_array_equal(again, first)

    # The gate goes through the same cache: its second run encodes nothing.
    trait = [TraitCheck("animal", "fox", CATEGORY)]
    check_image(scorer, fox, STYLE, -1.0, traits=trait)
    calls = scorer.text_encoder_calls
    check_image(scorer, fox, STYLE, -1.0, traits=trait)
    assert scorer.text_encoder_calls == calls
