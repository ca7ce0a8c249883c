"""The gate's near-duplicate uniqueness check: on reference-world images, through the render
stage (real database, reference models), under concurrency, and as the verifier re-derives it.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from django.db import connection
from PIL import Image, ImageEnhance

from generation import near_duplicates, pipeline
from generation.clip_gate import check_image, get_scorer
from generation.collection_config import generation_config
from generation.metadata import build_metadata
from generation.models import Collection, Token, TokenEvent
from generation.reference_world.world import dataset
from verifier.checks import State, check_clip_thresholds
from verifier.report import FAIL, PASS

SEED = "0x" + hashlib.sha256(b"a near-duplicate seed").hexdigest()
THRESHOLD = near_duplicates.DEFAULT_THRESHOLD


@pytest.fixture(autouse=True)
def render_cache(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.RENDER_CACHE_DIR = tmp_path / "renders"
    settings.RENDER_DEVICE = "cpu"
    return settings.RENDER_CACHE_DIR


# --- the measure on the reference world ---------------------------------------------------


def _shift(image: Image.Image, dx: int, dy: int) -> Image.Image:
    a = np.asarray(image)
    padded = np.pad(a, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="edge")
    y0, x0 = abs(dy) - dy, abs(dx) - dx
    return Image.fromarray(padded[y0 : y0 + a.shape[0], x0 : x0 + a.shape[1]])


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _noise(image: Image.Image, sigma: float) -> Image.Image:
    a = np.asarray(image, dtype=np.float64)
    a = a + np.random.default_rng(0).normal(0.0, sigma, a.shape)
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


WORLD = list(dataset(40, 11, balanced=False))
COPIES = {
    "the same image": lambda im: im.copy(),
    "shifted 2 px": lambda im: _shift(im, 2, -1),
    "re-encoded as JPEG 90": lambda im: _jpeg(im, 90),
    "noised (σ 4)": lambda im: _noise(im, 4),
    "shifted and noised": lambda im: _noise(_shift(im, 1, 1), 3),
    "brightened by 10 levels": lambda im: Image.fromarray(
        np.clip(np.asarray(im, dtype=np.int16) + 10, 0, 255).astype(np.uint8)
    ),
}


def _same_trait_pairs() -> list[tuple[int, int]]:
    keys = [tuple(sorted(item.traits.items())) for item in WORLD]
    return [(i, j) for i in range(len(WORLD)) for j in range(i) if keys[i] == keys[j]]


@pytest.mark.parametrize("copy", list(COPIES))
def test_it_rejects_a_near_copy_of_an_earlier_tokens_image(
    reference_models: Path, copy: str
) -> None:
    scorer = get_scorer(reference_models / "clip", device="cpu")
    original, other = WORLD[0].image, WORLD[1].image
    earlier = np.stack([near_duplicates.signature(other), near_duplicates.signature(original)])
    result = check_image(
        scorer,
        COPIES[copy](original),
        "a flat geometric token",
        -1.0,
        earlier_signatures=earlier,
        near_duplicate_threshold=THRESHOLD,
    )
    assert not result.passed
    assert result.scores["near_duplicate_min"] <= THRESHOLD
    assert result.thresholds["near_duplicate_min"] == THRESHOLD
    (reason,) = result.reasons
    assert reason.startswith("uniqueness: near-duplicate distance")


def test_it_accepts_honest_tokens_that_share_every_trait(reference_models: Path) -> None:
    scorer = get_scorer(reference_models / "clip", device="cpu")
    pairs = _same_trait_pairs()
    assert len(pairs) >= 5  # the table below is not empty
    for i, j in pairs:
        assert WORLD[i].traits == WORLD[j].traits
        result = check_image(
            scorer,
            WORLD[i].image,
            "a flat geometric token",
            -1.0,
            earlier_signatures=near_duplicates.signature(WORLD[j].image)[None],
            near_duplicate_threshold=THRESHOLD,
        )
        assert result.passed, (i, j, result.scores)
        assert result.scores["near_duplicate_min"] > THRESHOLD


def _enhanced(kind: str, factor: float) -> Callable[[Image.Image], Image.Image]:
    enhancer = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast}[kind]
    return lambda image: enhancer(image).enhance(factor)


RENDER_COPIES = {
    "brightened by 5%": _enhanced("brightness", 1.05),
    "darkened by 5%": _enhanced("brightness", 0.95),
    "brightened by 10%": _enhanced("brightness", 1.10),
    "darkened by 10%": _enhanced("brightness", 0.90),
    "with 10% more contrast": _enhanced("contrast", 1.10),
    "with 10% less contrast": _enhanced("contrast", 0.90),
    "shifted 1 px and brightened by 10%": lambda im: _enhanced("brightness", 1.1)(_shift(im, 1, 1)),
}


@pytest.mark.parametrize("copy", list(RENDER_COPIES))
def test_a_brightened_or_contrast_changed_copy_of_a_render_is_rejected(
    world_renders: list[Image.Image], copy: str
) -> None:
    # a brightness factor scales the image's contrast: centring alone let 5% through half the
    # time and 10% nearly always; the fitted gain makes such a copy as near as the image itself
    original, *others = world_renders
    earlier = np.stack([near_duplicates.signature(image) for image in [*others, original]])
    distance = near_duplicates.nearest_distance(RENDER_COPIES[copy](original), earlier)
    assert distance is not None and distance <= THRESHOLD / 2
    # the nearest is the original, not another render
    assert int(np.argmin(near_duplicates.distances(RENDER_COPIES[copy](original), earlier))) == 3


def test_honest_renders_of_different_tokens_are_accepted(world_renders: list[Image.Image]) -> None:
    signatures = np.stack([near_duplicates.signature(image) for image in world_renders])
    for i, image in enumerate(world_renders):
        others = np.delete(signatures, i, axis=0)
        distance = near_duplicates.nearest_distance(image, others)
        assert distance is not None and distance > THRESHOLD, (i, distance)


def test_a_mostly_white_image_is_still_compared_everywhere() -> None:
    # cells with a clipped pixel are left out only where most of a channel is not clipped: a
    # mostly white image and a mostly white image of something else stay far apart
    white = np.full((64, 64, 3), 255, dtype=np.uint8)
    square, bar = white.copy(), white.copy()
    square[8:24, 8:24] = (20, 120, 200)
    bar[40:48, 4:60] = (20, 120, 200)
    earlier = near_duplicates.signature(Image.fromarray(square))[None]
    distance = near_duplicates.nearest_distance(Image.fromarray(bar), earlier)
    assert distance is not None and distance > THRESHOLD
    assert near_duplicates.nearest_distance(Image.fromarray(square), earlier) == 0.0


def test_a_world_clip_cannot_tell_the_same_traits_from_a_copy() -> None:
    # why the check is not CLIP's: the world's own CLIP puts an honest same-trait pair closer
    # than an image and its copy shifted by two pixels
    clip_dir = Path(__file__).resolve().parent.parent / "models" / "reference-world" / "clip"
    scorer = get_scorer(clip_dir, device="cpu")
    cosines, distances = [], []
    for i, j in _same_trait_pairs():
        a, b = WORLD[i].image, WORLD[j].image
        shifted = _shift(a, 2, -2)
        honest = float(scorer.image_embedding(a) @ scorer.image_embedding(b))
        copy = float(scorer.image_embedding(a) @ scorer.image_embedding(shifted))
        cosines.append((honest, copy))
        signature = near_duplicates.signature(a)[None]
        distances.append((near_duplicates.distances(b, signature)[0], 0.0))
    assert max(honest for honest, _ in cosines) > min(copy for _, copy in cosines)
    assert min(honest for honest, _ in distances) > THRESHOLD


# --- through the render stage -------------------------------------------------------------


def make_token(
    reference_models: Path, slug: str, token_id: int, seed: str = SEED, **fields: object
) -> Token:
    collection, _ = Collection.objects.get_or_create(
        slug=slug,
        defaults={
            "name": "Near duplicates",
            "chain_id": 31337,
            "contract_address": "0x" + hashlib.sha256(slug.encode()).hexdigest()[:40],
            "model_dir": str(reference_models / "diffusion"),
            "clip_dir": str(reference_models / "clip"),
            # no token id in the prompt: two tokens with one seed render the same image
            "prompt_template": "an abstract painting",
            "style_prompt": "an abstract painting",
            "clip_threshold": -1.0,
            "steps": 2,
            "max_attempts": 2,
            "near_duplicate_threshold": THRESHOLD,
            **fields,
        },
    )
    return Token.objects.create(
        collection=collection,
        token_id=token_id,
        owner="0x" + "11" * 20,
        mint_tx_hash=f"0x{token_id:064x}",
        mint_log_index=0,
        mint_block_number=1,
        mint_block_hash="0x" + "22" * 32,
        expected_seed=seed,
        seed=seed,
        status=Token.Status.SEED_COMMITTED,
    )


def _verified(token: Token) -> State:
    """The verifier's view of the token: its published metadata and the frozen config."""
    token.refresh_from_db()
    state = State(token_id=token.token_id)
    state.metadata = build_metadata(token, "bafy-not-checked-here")
    state.config = generation_config(token.collection)
    return state


@pytest.mark.django_db
def test_the_render_stage_rejects_a_copy_of_an_earlier_token_and_accepts_an_honest_one(
    reference_models: Path,
) -> None:
    # Given a token rendered, then one with the same seed and prompt (the same image) and one
    # with another seed
    first = make_token(reference_models, "near-dup", 1)
    copy = make_token(reference_models, "near-dup", 2)
    honest = make_token(reference_models, "near-dup", 3, seed="0x" + "ab" * 32)
    assert pipeline.run_render(first.pk) == Token.Status.RENDERED
    # When the copy renders, its first attempt is rejected and the next one accepted
    assert pipeline.run_render(copy.pk) == Token.Status.RENDERED
    copy.refresh_from_db()
    assert copy.attempt == 1
    rejection = TokenEvent.objects.get(token=copy, detail__startswith="attempt 0 rejected")
    assert "near-duplicate distance 0.000000" in rejection.detail
    # and the honest token passes at its first attempt, its distance on record
    assert pipeline.run_render(honest.pk) == Token.Status.RENDERED
    honest.refresh_from_db()
    assert honest.attempt == 0
    scores = honest.clip_scores
    assert scores["scores"]["near_duplicate_min"] > scores["thresholds"]["near_duplicate_min"]
    assert scores["thresholds"]["near_duplicate_min"] == THRESHOLD
    assert honest.image_signature is not None
    assert len(bytes(honest.image_signature)) == 4 * near_duplicates.SIGNATURE_SIZE


@pytest.mark.django_db
def test_the_verifier_re_derives_the_near_duplicate_decision(reference_models: Path) -> None:
    first = make_token(reference_models, "near-dup-verify", 1)
    second = make_token(reference_models, "near-dup-verify", 2, seed="0x" + "cd" * 32)
    for token in (first, second):
        assert pipeline.run_render(token.pk) == Token.Status.RENDERED
    state = _verified(second)
    assert state.config is not None and state.metadata is not None
    assert state.config["near_duplicates"]["threshold"] == THRESHOLD
    check = check_clip_thresholds(state)
    assert check.status == PASS, check.detail
    assert "near_duplicate_min" in check.detail

    # a recorded distance at the threshold is a duplicate, whatever the record claims
    clip = state.metadata["provenance"]["clip"]
    clip["scores"]["near_duplicate_min"] = THRESHOLD
    check = check_clip_thresholds(state)
    assert check.status == FAIL and "is not above" in check.detail
    # a threshold other than the frozen one is refused
    clip["scores"]["near_duplicate_min"] = 0.5
    clip["thresholds"]["near_duplicate_min"] = 0.001
    check = check_clip_thresholds(state)
    assert check.status == FAIL and "near-duplicate threshold recorded 0.001" in check.detail


@pytest.mark.django_db
def test_a_collection_without_the_check_keeps_its_config_and_records(
    reference_models: Path,
) -> None:
    # Given a collection as they were before near duplicates were checked
    token = make_token(reference_models, "no-near-dup", 1, near_duplicate_threshold=None)
    second = make_token(reference_models, "no-near-dup", 2, near_duplicate_threshold=None)
    for t in (token, second):
        assert pipeline.run_render(t.pk) == Token.Status.RENDERED
    second.refresh_from_db()
    # the copy is not compared (the check is off), its record and the config say nothing of it
    assert second.attempt == 0
    assert "near_duplicate_min" not in second.clip_scores["scores"]
    assert "near_duplicates" not in generation_config(second.collection)
    assert check_clip_thresholds(_verified(second)).status == PASS


# --- concurrently -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_of_two_copies_rendered_at_the_same_moment_exactly_one_is_accepted_first(
    reference_models: Path,
) -> None:
    # Given two tokens whose renders are the same image (same seed, same prompt), rendered by
    # two workers at once: slow enough (steps) that each has claimed its token and is rendering
    # while the other finishes
    fields = {"steps": 12}
    tokens = [make_token(reference_models, "near-dup-race", i, **fields) for i in (1, 2)]
    pipeline.load_models(tokens[0].collection, "cpu")  # both threads start with warm models
    barrier = threading.Barrier(2)
    results: dict[int, object] = {}

    def work(pk: int) -> None:
        try:
            barrier.wait()
            results[pk] = pipeline.run_render(pk)
        except BaseException as exc:  # reported below
            results[pk] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(t.pk,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then both end rendered, but only one with its first attempt: the other's first attempt
    # saw the image the first had just accepted and was rejected
    assert results == {t.pk: Token.Status.RENDERED for t in tokens}
    attempts = sorted(Token.objects.filter(pk__in=[t.pk for t in tokens]).values_list("attempt"))
    assert attempts == [(0,), (1,)]
    rejections = TokenEvent.objects.filter(
        token__in=tokens, detail__startswith="attempt 0 rejected"
    )
    (rejection,) = rejections
    assert "near-duplicate distance 0.000000" in rejection.detail


@pytest.mark.django_db
def test_the_index_reads_a_tokens_vector_again_when_its_image_changed(
    reference_models: Path,
) -> None:
    from generation.clip_gate import embedding_to_bytes
    from generation.uniqueness import EmbeddingIndex

    token = make_token(reference_models, "near-dup-index", 1)
    later = make_token(reference_models, "near-dup-index", 2)
    old, new = (
        np.zeros(near_duplicates.SIGNATURE_SIZE, np.float32),
        np.ones(near_duplicates.SIGNATURE_SIZE, np.float32),
    )
    Token.objects.filter(pk=token.pk).update(
        status=Token.Status.RENDERED,
        image_sha256="aa" * 32,
        image_signature=embedding_to_bytes(old),
    )
    index = EmbeddingIndex(token.collection_id, "image_signature")
    assert np.array_equal(index.earlier(later.pk), old[None])
    # the token is accepted again with another image (a re-render after it failed): the index
    # must not compare with the image it read before
    Token.objects.filter(pk=token.pk).update(
        image_sha256="bb" * 32, image_signature=embedding_to_bytes(new)
    )
    assert np.array_equal(index.earlier(later.pk), new[None])
    assert index.fetched == 2


@pytest.mark.django_db
def test_the_threshold_is_validated_and_frozen_with_the_config(reference_models: Path) -> None:
    from django.core.exceptions import ValidationError

    collection = make_token(reference_models, "near-dup-frozen", 1).collection
    collection.near_duplicate_threshold = 1.5
    with pytest.raises(ValidationError) as caught:
        collection.full_clean()
    assert "near_duplicate_threshold" in caught.value.message_dict
    collection.near_duplicate_threshold = THRESHOLD
    collection.config_digest = "0x" + "ee" * 32
    collection.save()
    collection.near_duplicate_threshold = 0.05
    with pytest.raises(ValidationError) as caught:
        collection.full_clean()
    assert "frozen" in " ".join(caught.value.message_dict["near_duplicate_threshold"])


def test_the_token_page_and_the_admin_read_the_distance_as_passing_above() -> None:
    from mintsite.admin.tokens import clip_lines
    from mintsite.pages.views import clip_rows

    scores = {"near_duplicate_min": THRESHOLD / 2, "uniqueness_max": 0.5}
    thresholds = {"near_duplicate_min": THRESHOLD, "uniqueness_max": 0.9}
    rows = {row["name"]: row for row in clip_rows(scores, thresholds)}
    assert rows["near_duplicate_min"]["rule"] == "above"
    assert rows["near_duplicate_min"]["passed"] is False
    assert rows["uniqueness_max"]["passed"] is True
    # a distance equal to the threshold is a duplicate
    at = {"near_duplicate_min": THRESHOLD}
    assert clip_rows(at, thresholds)[0]["passed"] is False
    lines = str(clip_lines({"scores": at, "thresholds": thresholds}))
    assert f"✗ near_duplicate_min {THRESHOLD:.4f} (needs &gt; {THRESHOLD:.4f})" in lines
    passing = str(clip_lines({"scores": {"near_duplicate_min": 0.2}, "thresholds": thresholds}))
    assert f"✓ near_duplicate_min 0.2000 (needs &gt; {THRESHOLD:.4f})" in passing
