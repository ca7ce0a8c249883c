"""The warm pool: a render worker keeps its most recently used models within
``RENDER_MODEL_MEMORY_MB``, and ``/metrics`` shows its loads, hits, evictions and bytes held.

Real models: the untrained reference diffusion model (about 12.4 MiB of weights) and a copy of
it in another folder (a second collection's model), and the reference CLIP model (about 6.4 MiB).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.test import Client
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from generation.batching import get_batcher
from generation.clip_gate import get_scorer
from generation.model_pool import MB, POOL
from generation.rendering import RenderParams, get_renderer

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parent.parent
PARAMS = RenderParams(
    prompt="a red fox, oil painting",
    negative_prompt="blurry",
    steps=2,
    guidance=7.5,
    width=64,
    height=64,
)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def model_a(reference_models: Path) -> Path:
    return reference_models / "diffusion"


@pytest.fixture(scope="module")
def model_b(reference_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights in another folder: another collection's model to the pool."""
    copy = tmp_path_factory.mktemp("second-collection") / "diffusion"
    shutil.copytree(reference_models / "diffusion", copy)
    return copy


@pytest.fixture
def budget() -> Iterator[None]:
    """An empty pool; the configured budget is restored after the test (the test sets its own)."""
    POOL.clear()
    yield
    POOL.clear()
    POOL.set_budget(settings.RENDER_MODEL_MEMORY_MB * MB)


def scrape() -> Samples:
    response = Client().get("/metrics")
    assert response.status_code == 200, response.content
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, name: str, kind: str) -> float:
    key = (name, frozenset({("kind", kind)}))
    return after.get(key, 0.0) - before.get(key, 0.0)


def pool_bytes(samples: Samples, kind: str) -> float:
    return samples[("mint_model_pool_bytes", frozenset({("kind", kind)}))]


def test_it_evicts_and_reloads_when_two_collections_alternate_beyond_the_budget(
    budget: None, model_a: Path, model_b: Path
) -> None:
    # Given a budget that holds one reference renderer (12.4 MiB) but not two
    POOL.set_budget(20 * MB)
    before = scrape()

    # When a worker alternates between two collections' models
    first_a = get_renderer(model_a, "cpu")
    first_b = get_renderer(model_b, "cpu")
    assert not POOL.holds(first_a)
    second_a = get_renderer(model_a, "cpu")
    assert POOL.held_bytes() <= 20 * MB
    second_b = get_renderer(model_b, "cpu")
    again_b = get_renderer(model_b, "cpu")

    # Then each switch reloads (a new object) and evicts the other, and the metrics say so
    assert second_a is not first_a and second_b is not first_b and again_b is second_b
    assert POOL.held_bytes() == second_b.memory_bytes() <= 20 * MB
    after = scrape()
    assert moved(before, after, "mint_model_loads_total", "renderer") == 4
    assert moved(before, after, "mint_model_evictions_total", "renderer") == 3
    assert moved(before, after, "mint_model_hits_total", "renderer") == 1
    assert pool_bytes(after, "renderer") == second_b.memory_bytes()


def test_one_budget_holds_both_kinds_and_evicts_the_least_recently_used(
    budget: None, model_a: Path, model_b: Path, reference_models: Path
) -> None:
    # Given a budget for one renderer and the CLIP model (12.4 + 6.4 MiB), not two renderers
    POOL.set_budget(20 * MB)
    renderer_a = get_renderer(model_a, "cpu")
    scorer = get_scorer(reference_models / "clip", "cpu")  # used after renderer A
    before = scrape()

    # When the second collection's renderer loads
    get_renderer(model_b, "cpu")

    # Then renderer A, the least recently used, went; the CLIP model stayed
    after = scrape()
    assert moved(before, after, "mint_model_evictions_total", "renderer") == 1
    assert moved(before, after, "mint_model_evictions_total", "clip") == 0
    assert get_scorer(reference_models / "clip", "cpu") is scorer
    assert not POOL.holds(renderer_a)
    assert pool_bytes(after, "clip") == scorer.memory_bytes()


def test_with_no_limit_nothing_is_evicted_and_a_second_request_is_a_hit(
    budget: None, model_a: Path, model_b: Path
) -> None:
    # Given the default budget: no limit
    POOL.set_budget(0)
    before = scrape()

    # When two models load and are asked for again
    renderer_a, renderer_b = get_renderer(model_a, "cpu"), get_renderer(model_b, "cpu")
    assert get_renderer(model_a, "cpu") is renderer_a
    assert get_renderer(model_b, "cpu") is renderer_b

    # Then both stay, and the hit rate hits / (hits + loads) is one half
    after = scrape()
    loads = moved(before, after, "mint_model_loads_total", "renderer")
    hits = moved(before, after, "mint_model_hits_total", "renderer")
    assert (loads, hits) == (2, 2)
    assert moved(before, after, "mint_model_evictions_total", "renderer") == 0
    assert POOL.held_bytes() == renderer_a.memory_bytes() + renderer_b.memory_bytes()


def test_a_model_larger_than_the_budget_is_kept_alone_with_a_warning(
    budget: None, model_a: Path, caplog: pytest.LogCaptureFixture
) -> None:
    POOL.set_budget(1 * MB)
    with caplog.at_level(logging.WARNING, logger="generation.model_pool"):
        renderer = get_renderer(model_a, "cpu")
    assert "more than RENDER_MODEL_MEMORY_MB=1: kept alone" in caplog.text
    assert get_renderer(model_a, "cpu") is renderer


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_an_evicted_renderer_still_renders_for_the_thread_holding_it(
    budget: None, model_a: Path, model_b: Path
) -> None:
    # Given a budget for one renderer, and a render thread holding collection A's renderer
    # and batcher
    POOL.set_budget(20 * MB)
    batcher = get_batcher(model_a, "cpu", max_batch=2, max_wait=0.01)
    held = batcher.renderer
    expected = pixels(held.render(PARAMS, b"\x01" * 32, 0))
    evicted = threading.Event()
    results: list[Image.Image] = []

    def render_thread() -> None:
        evicted.wait()
        results.append(held.render(PARAMS, b"\x01" * 32, 0))
        results.append(batcher.render(PARAMS, b"\x01" * 32, 0))

    thread = threading.Thread(target=render_thread, daemon=True)
    thread.start()

    # When another thread takes collection B's batcher, evicting A
    try:
        batcher_b = get_batcher(model_b, "cpu", max_batch=2, max_wait=0.01)
        assert not POOL.holds(held)
    finally:
        evicted.set()
    thread.join(timeout=120)

    # Then the holder's renders are the image it rendered before the eviction
    assert len(results) == 2
    for image in results:
        assert np.array_equal(pixels(image), expected)
    # and A's batcher was closed (its thread gone, so nothing keeps A) while B's serves
    batcher._thread.join(timeout=30)
    assert not batcher._thread.is_alive()
    assert batcher_b.renderer is get_renderer(model_b, "cpu")
    # and A asked for again is a fresh load with a new batcher
    reloaded = get_batcher(model_a, "cpu", max_batch=2, max_wait=0.01)
    assert reloaded is not batcher and reloaded.renderer is not held


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "RENDER_MODEL_MEMORY_MB='lots' is not an integer"),
        ("-512", "RENDER_MODEL_MEMORY_MB=-512 must be at least 0"),
    ],
)
def test_a_bad_budget_stops_the_process_naming_the_variable(value: str, message: str) -> None:
    env = {**os.environ, "RENDER_MODEL_MEMORY_MB": value}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_a_rendered_token_asks_the_pool_once_for_each_model(
    budget: None,
    reference_models: Path,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    from generation import pipeline
    from generation.models import Token
    from tests.test_pipeline import make_token

    # Given a worker that batches renders, its models already loaded
    settings.RENDER_BATCH_SIZE = 4
    token = make_token(reference_models, threshold=-1.0, slug="warm-pool")
    get_renderer(token.collection.model_path(), settings.RENDER_DEVICE)
    get_scorer(token.collection.clip_path(), settings.RENDER_DEVICE)
    before = scrape()

    # When one token renders (one attempt: the gate passes anything)
    assert pipeline.run_render(token.pk) == Token.Status.RENDERED

    # Then the hit rate counts one request per model, not one per place that uses it
    after = scrape()
    assert moved(before, after, "mint_model_hits_total", "renderer") == 1
    assert moved(before, after, "mint_model_hits_total", "clip") == 1
    assert moved(before, after, "mint_model_loads_total", "renderer") == 0
