"""Render+verify throughput (``manage.py bench_render``, what ``make bench`` calls).

On the reference models and a fresh test database, in one run: cold start (models loaded and a
first render), the bare loop (the models called directly: traits, prompt, render, CLIP gate —
the floor), the same tokens through the queue (a real ``rundramatiq`` render worker taking
``render_token`` messages from the broker, the database claims included), their ratio (target:
the queue path at least 0.85 of the bare loop), and the latency of a cache hit. A benchmark, not
a test: it prints figures and does not fail on them.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max, Min
from django.utils import timezone

from devtools.doc_sections import write_section
from devtools.errors import BenchmarkError
from devtools.preflight import bench_broker, throwaway_database
from generation.models import Collection, Token, TokenEvent
from mintsite.database_url import current_database_url

Status = Token.Status
THREAD_NOTE = (
    "On CPU, a torch render on any thread but the main one is slower (libgomp keeps only "
    "the main thread's OpenMP team spinning hot; `OMP_WAIT_POLICY=PASSIVE` makes both "
    "equally slow), so the one-after-another bare loop, which renders on the main thread, "
    "is not a like-for-like floor for a worker whose renders run on its batcher thread; the"
    " micro-batched floor is."
)


def run_render_bench(tokens: int = 48, steps: int = 4, rounds: int = 3) -> dict[str, Any]:
    """The figures of one run, on a throwaway database, in the benchmark's broker namespace."""
    scratch = Path(tempfile.mkdtemp(prefix="mint-bench-render-"))
    saved_cache = settings.RENDER_CACHE_DIR
    try:
        with bench_broker(), throwaway_database():
            return _run(tokens, steps, rounds, scratch)
    finally:
        settings.RENDER_CACHE_DIR = saved_cache
        shutil.rmtree(scratch, ignore_errors=True)


def write_report(path: Path, lines: list[str]) -> None:
    """The report's table as the ``bench-render`` section of ``path`` (docs/benchmarks.md)."""
    write_section(path, "bench-render", [
        "## Render and verify",
        "",
        "Reference models (64x64, untrained), CPU float32. The bare loop calls the "
        "models directly, one token after another; the queue path is a real `rundramatiq` "
        "render worker (RENDER_BATCH_SIZE threads sharing micro-batched pipeline calls) "
        "taking `render_token` messages, with the database claims.",
        "",
        THREAD_NOTE,
        "",
        *lines,
        "",
        f"- Date: {date.today().isoformat()}; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, {connection.vendor}",
        "- Reproduce: `make bench`",
    ])  # fmt: skip


def _run(n: int, steps: int, rounds: int, scratch: Path) -> dict[str, Any]:
    from generation.clip_gate import check_image, get_scorer
    from generation.pipeline import cached_render, render_params, traits_for
    from generation.rendering import get_renderer
    from generation.traits import render_prompt

    models = Path(settings.REFERENCE_MODELS_DIR)
    collection = Collection.objects.create(
        slug="bench", name="Bench", chain_id=31337, contract_address="0x" + "be" * 20,
        model_dir=str(models / "diffusion"), clip_dir=str(models / "clip"),
        prompt_template="an abstract painting, token {token_id}", style_prompt="a painting",
        clip_threshold=-1.0, steps=steps,
    )  # fmt: skip
    every = [
        Token.objects.create(
            collection=collection, token_id=i, owner="0x" + "11" * 20,
            mint_tx_hash=f"0x{i:064x}", mint_log_index=0, mint_block_number=1,
            mint_block_hash="0x" + "22" * 32,
            expected_seed="0x" + hashlib.sha256(f"bench:{i}".encode()).hexdigest(),
            seed="0x" + hashlib.sha256(f"bench:{i}".encode()).hexdigest(),
            status=Status.SEED_COMMITTED,
        )
        for i in range(1, n * (1 + rounds) + 1)
    ]  # fmt: skip
    tokens = every[:n]

    settings.RENDER_CACHE_DIR = scratch / "bare"
    started = time.perf_counter()
    renderer = get_renderer(collection.model_path(), "cpu")
    scorer = get_scorer(collection.clip_path(), "cpu")
    loaded = time.perf_counter() - started
    first = renderer.warm_up(render_params(collection, "warm-up"))
    cold_start = loaded + first

    started = time.perf_counter()
    for token in tokens:
        seed = token.seed_bytes
        traits = traits_for(token, seed)
        prompt = render_prompt(collection.prompt_template, traits, collection.rarity,
                               token_id=token.token_id, collection=collection.name)  # fmt: skip
        image = cached_render(renderer, render_params(collection, prompt), seed, 0)
        check_image(scorer, image, collection.style_prompt, collection.clip_threshold)
    bare = time.perf_counter() - started

    started = time.perf_counter()
    token = tokens[0]
    prompt = render_prompt(collection.prompt_template, {}, collection.rarity,
                           token_id=token.token_id, collection=collection.name)  # fmt: skip
    cached_render(renderer, render_params(collection, prompt), token.seed_bytes, 0)
    cache_hit = time.perf_counter() - started

    batch_rates = {size: _batched(collection, tokens, size) for size in (1, 4, 8)}
    # The comparison that counts, measured side by side: each round times the bare loop
    # with the worker's batching, then the same number of new tokens through the queue.
    threads = settings.RENDER_BATCH_SIZE
    pairs = []
    with _worker(scratch) as (submit, worker_boot):
        for r in range(rounds):
            floor = _batched(collection, tokens, threads, tag=f"round {r}")
            queued, pickup = submit(every[n * (r + 1) : n * (r + 2)])
            pairs.append((floor, 3600 * n / queued, pickup))
    return {
        "tokens": n,
        "steps": steps,
        "load_s": loaded,
        "cold_start_s": cold_start,
        "bare_s": bare,
        "pairs": pairs,
        "worker_boot_s": worker_boot,
        "cache_hit_ms": cache_hit * 1000,
        "batch_rates": batch_rates,
        "worker_threads": settings.RENDER_BATCH_SIZE,
    }


def _batched(collection: Collection, tokens: list[Token], size: int, tag: str = "") -> float:
    """Tokens per hour rendered AND verified by ``size`` threads sharing a RenderBatcher
    (no inference cache): the bare loop with the render worker's batching, the floor the
    queue path is compared with."""
    from concurrent.futures import ThreadPoolExecutor

    from generation.batching import RenderBatcher
    from generation.clip_gate import check_image, get_scorer
    from generation.pipeline import render_params
    from generation.rendering import get_renderer

    batcher = RenderBatcher(
        get_renderer(collection.model_path(), "cpu"), max_batch=size, max_wait=0.05
    )
    scorer = get_scorer(collection.clip_path(), "cpu")
    jobs = [
        (
            # a prompt of its own per batch size, so each run pays its text encodes
            render_params(collection, f"batch {size} token {t.token_id} {tag}"),
            t.seed_bytes,
        )
        for t in tokens
    ]

    def render_and_verify(job: tuple[Any, bytes]) -> None:
        image = batcher.render(job[0], job[1], 0)
        check_image(scorer, image, collection.style_prompt, collection.clip_threshold)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=size) as pool:
        list(pool.map(render_and_verify, jobs))
    return 3600 * len(jobs) / (time.perf_counter() - started)


@contextmanager
def _worker(scratch: Path) -> Iterator[tuple[Any, float]]:
    """A real ``rundramatiq`` render worker, warmed up; yields (submit, seconds to warm).

    ``submit(tokens)`` sends their ``render_token`` messages and returns (seconds from the
    worker's first claim to its last accepted render, read from the tokens' stage history;
    seconds from sending to that first claim: an idle consumer's poll back-off, which
    Dramatiq lets grow up to its idle timeout, reported on its own).
    """
    from generation import stages

    log_path = scratch / "render-worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": current_database_url(),
        "RENDER_CACHE_DIR": str(scratch / "queue"),
        "RENDER_DEVICE": "cpu",
    }
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "rundramatiq",
         "--processes", "1", "--threads", str(settings.RENDER_BATCH_SIZE), "--queues", "render",
         "--worker-shutdown-timeout", "5000"],
        env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip

    def submit(tokens: list[Token]) -> tuple[float, float]:
        sent_at = timezone.now()
        for token in tokens:
            stages.send(stages.RENDER, token.pk)
        pks = [t.pk for t in tokens]
        deadline = time.monotonic() + 600
        while Token.objects.filter(pk__in=pks, status=Status.RENDERED).count() < len(pks):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError(f"the queue did not finish: see {log_path}")
            time.sleep(0.05)
        history = TokenEvent.objects.filter(token_id__in=pks)
        first = history.filter(status=Status.RENDERING).aggregate(at=Min("at"))["at"]
        last = history.filter(status=Status.RENDERED).aggregate(at=Max("at"))["at"]
        return (last - first).total_seconds(), (first - sent_at).total_seconds()

    try:
        deadline = time.monotonic() + 300
        while "warm: bench" not in log_path.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError(f"the render worker did not warm up: see {log_path}")
            time.sleep(0.1)
        yield submit, time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def report(f: dict[str, Any]) -> list[str]:
    per_hour = 3600 * f["tokens"]
    bare_rate = per_hour / f["bare_s"]
    threads = f["worker_threads"]
    ratios = sorted(queue / floor for floor, queue, _ in f["pairs"])
    median = ratios[len(ratios) // 2]
    lines = [
        "| measure | value |",
        "|---|---:|",
        f"| tokens per measurement (steps {f['steps']}) | {f['tokens']} |",
        f"| cold start in-process: models loaded + first render | {f['cold_start_s']:.2f} s "
        f"(load {f['load_s']:.2f} s) |",
        f"| render worker: start to warmed up | {f['worker_boot_s']:.2f} s |",
        f"| bare loop, one token after another (render + verify) | {bare_rate:,.0f} tokens/hour |",
        *(
            f"| bare, micro-batched by {size} ({size} threads; render + verify) | "
            f"{rate:,.0f} tokens/hour |"
            for size, rate in f["batch_rates"].items()
        ),
        *(
            f"| round {r + 1}: bare micro-batched by {threads} / through the queue (real worker, "
            f"{threads} threads = RENDER_BATCH_SIZE, database claims) | {floor:,.0f} / "
            f"{queue:,.0f} tokens/hour: {queue / floor:.2f} (first claim after "
            f"{pickup:.2f} s idle) |"
            for r, (floor, queue, pickup) in enumerate(f["pairs"])
        ),
        f"| **queue / bare micro-batched by {threads} (same work, same batching; median of "
        f"{len(ratios)} rounds)** | **{median:.3f}** (target >= 0.85: "
        f"{'PASS' if median >= 0.85 else 'FAIL'}) |",
        f"| cache hit (a render already done) | {f['cache_hit_ms']:.1f} ms |",
    ]
    return lines
