"""The latency levers side by side (``manage.py bench_latency``, what ``make bench-latency``
calls).

The same tokens (same seeds, so the same traits and prompts) of the reference world's
collection are rendered by each variant: the float32 teacher at its configured 20 steps and
at 4, the distilled student (``manage.py distill``) at 4, 2 and 1 step, int8 weights, ONNX
Runtime, and ONNX + student. For each, one table row: ms per image at batch 1 and at the
render worker's batch size, tokens per hour through a real ``rundramatiq`` render worker (the
gate, re-renders and database claims included), the speedup against the teacher (ms per
image at the worker's batch size), the world oracle's trait accuracy on the first renders
(every category right), the share of first renders the collection's gate accepts, and the
mean pixel distance (0-255) to the teacher's render of the same token. The last line names
the fastest variant that loses at most :data:`TARGET_POINTS` points of accuracy.

A benchmark, not a test: it prints figures and does not fail on them. The in-process figures
run on one torch thread (as the accuracy bench does: the images then do not depend on the
machine's core count); the worker runs with its own settings.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Max, Min
from PIL import Image

from devtools.doc_sections import write_section
from devtools.errors import BenchmarkError
from devtools.preflight import bench_broker, throwaway_database
from generation.models import Collection, Token, TokenEvent
from mintsite.database_url import current_database_url

Status = Token.Status
TARGET_SPEEDUP = 4.0
TARGET_POINTS = 2.0  # accuracy points (of 100) a variant may lose and still count


@dataclass(frozen=True)
class Variant:
    """One way to render the collection's tokens."""

    name: str
    model: str  # "teacher" or "student"
    steps: int
    guidance: float
    quantization: str = ""
    onnx: bool = False


VARIANTS: tuple[Variant, ...] = (
    Variant("teacher float32 20 steps", "teacher", 20, 4.0),
    Variant("teacher float32 4 steps", "teacher", 4, 4.0),
    Variant("student 4 steps", "student", 4, 1.0),
    Variant("student 2 steps", "student", 2, 1.0),
    Variant("student 1 step", "student", 1, 1.0),
    Variant("teacher int8", "teacher", 20, 4.0, quantization="int8"),
    Variant("student int8 4 steps", "student", 4, 1.0, quantization="int8"),
    Variant("teacher ONNX Runtime", "teacher", 20, 4.0, onnx=True),
    Variant("student ONNX Runtime 4 steps", "student", 4, 1.0, onnx=True),
)
BASELINE = VARIANTS[0]


@dataclass
class Row:
    variant: Variant
    ms_batch1: float
    ms_batch: float
    accuracy: float  # every category right, share of first renders
    per_category: dict[str, float]
    accepted: float  # share of first renders the gate accepts
    pixel_distance: float  # mean |difference| to the teacher's render, 0-255
    tokens_per_hour: float | None = None
    speedup: float = 1.0
    images: list[Image.Image] = field(default_factory=list, repr=False)


def world_dir() -> Path:
    return Path(settings.REFERENCE_WORLD_DIR)


def model_dir(variant: Variant) -> Path:
    return world_dir() / ("diffusion" if variant.model == "teacher" else "student")


def token_seed(i: int) -> bytes:
    return hashlib.sha256(f"latency:{i}".encode()).digest()


def variant_fields(variant: Variant, onnx_dirs: dict[str, Path]) -> dict[str, Any]:
    """The collection fields that make the reference collection render as ``variant``."""
    fields: dict[str, Any] = {
        "model_dir": str(model_dir(variant)),
        "steps": variant.steps,
        "guidance": variant.guidance,
        "quantization": variant.quantization,
    }
    if variant.onnx:
        fields["onnx_dir"] = str(onnx_dirs[variant.model])
    return fields


def run_latency_bench(
    tokens: int = 128,
    worker_tokens: int = 24,
    variants: Sequence[Variant] = VARIANTS,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every variant's row, on a throwaway database, in the benchmark's broker namespace."""
    scratch = Path(tempfile.mkdtemp(prefix="mint-bench-latency-"))
    saved_cache = settings.RENDER_CACHE_DIR
    saved_roots = list(settings.MODEL_ROOTS)
    settings.MODEL_ROOTS = [*saved_roots, str(scratch)]  # the ONNX exports live there
    try:
        with bench_broker(), throwaway_database():
            return _run(tokens, worker_tokens, variants, scratch, log)
    finally:
        settings.RENDER_CACHE_DIR = saved_cache
        settings.MODEL_ROOTS = saved_roots


def _run(
    n: int,
    worker_n: int,
    variants: Sequence[Variant],
    scratch: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from chain.deployment import reference_world_spec
    from devtools.accuracy_bench import collection_from_spec
    from generation.traits import render_prompt, weighted_traits

    settings.RENDER_CACHE_DIR = scratch / "cache"
    onnx_dirs = _onnx_exports(variants, scratch, log)
    seeds = [token_seed(i) for i in range(1, n + 1)]
    collections: dict[Variant, Collection] = {}
    for index, variant in enumerate(variants):
        spec = reference_world_spec(slug=f"latency-{index}", **variant_fields(variant, onnx_dirs))
        collections[variant] = collection_from_spec(spec, f"0x{index + 1:040x}")
    some = next(iter(collections.values()))
    traits = [weighted_traits(seed, some.rarity) for seed in seeds]
    prompts = [
        render_prompt(some.prompt_template, t, some.rarity, token_id=i + 1, collection=some.name)
        for i, t in enumerate(traits)
    ]
    rows: list[Row] = []
    teacher_images: list[Image.Image] | None = None
    for variant in variants:
        log(f"{variant.name}: rendering {n} tokens")
        row = _measure(collections[variant], variant, seeds, traits, prompts, teacher_images)
        if variant == BASELINE:
            teacher_images = row.images
            row.pixel_distance = 0.0
        rows.append(row)
        log(
            f"  {row.ms_batch1:.0f} ms at batch 1, {row.ms_batch:.0f} ms at batch "
            f"{settings.RENDER_BATCH_SIZE}; accuracy {row.accuracy:.3f}, gate accepts "
            f"{row.accepted:.3f}"
        )
    if worker_n:
        log(f"through a real render worker: {worker_n} tokens per variant")
        rates = _through_worker(collections, worker_n, scratch)
        for row in rows:
            row.tokens_per_hour = rates[row.variant]
    base = next(r for r in rows if r.variant == BASELINE)
    for row in rows:
        row.speedup = base.ms_batch / row.ms_batch
        row.images = []
    return {
        "tokens": n,
        "worker_tokens": worker_n,
        "batch": settings.RENDER_BATCH_SIZE,
        "rows": rows,
        "missing": [v.name for v in VARIANTS if v not in variants],
    }


def _onnx_exports(
    variants: Sequence[Variant], scratch: Path, log: Callable[[str], None]
) -> dict[str, Path]:
    """The ONNX export of each model an ONNX variant uses: the committed one beside the model
    (``diffusion-onnx``, ``student-onnx``; the collection's check confirms it is that model's),
    else one made into ``scratch``."""
    exports: dict[str, Path] = {}
    models = sorted({v.model for v in variants if v.onnx})
    if not models:
        return exports
    from generation.onnx_export import export_onnx

    for model in models:
        committed = Path(f"{model_dir(Variant('', model, 1, 1.0))}-onnx")
        if (committed / "onnx.json").is_file():
            exports[model] = committed
            continue
        out = scratch / f"onnx-{model}"
        started = time.perf_counter()
        export_onnx(model_dir(Variant("", model, 1, 1.0)), out)
        log(f"{model} exported to ONNX in {time.perf_counter() - started:.1f} s")
        exports[model] = out
    return exports


@contextmanager
def _one_thread() -> Iterator[None]:
    from generation.torch_threads import one_torch_thread

    with one_torch_thread():
        yield


def _measure(
    collection: Collection,
    variant: Variant,
    seeds: list[bytes],
    traits: list[dict[str, str]],
    prompts: list[str],
    teacher: list[Image.Image] | None,
) -> Row:
    from generation.clip_gate import check_image, get_scorer
    from generation.pipeline import _style_reference, render_params, trait_checks_for
    from generation.reference_world.diffusion_training import oracle_accuracy
    from generation.rendering import get_renderer

    renderer = get_renderer(
        collection.model_path(), "cpu", collection.model_config_path(), collection.levers()
    )
    scorer = get_scorer(collection.clip_path(), "cpu")
    batch = settings.RENDER_BATCH_SIZE
    with _one_thread():
        renderer.warm_up(render_params(collection, prompts[0]))

        def requests(indices: range) -> list[Any]:
            return [
                (
                    renderer.prompt_embeddings(prompts[i], collection.negative_prompt,
                                               collection.guidance),
                    seeds[i],
                    0,
                )
                for i in indices
            ]  # fmt: skip

        params = render_params(collection, "")
        for i in range(len(prompts)):  # text encodes are cached per prompt in production too
            renderer.prompt_embeddings(prompts[i], collection.negative_prompt, collection.guidance)
        timed = min(len(seeds), 4 * batch)
        started = time.perf_counter()
        for i in range(timed):
            renderer.render_many(params, requests(range(i, i + 1)))
        ms_batch1 = 1000 * (time.perf_counter() - started) / timed
        images: list[Image.Image] = []
        started = time.perf_counter()
        for start in range(0, timed, batch):
            images += renderer.render_many(
                params, requests(range(start, min(start + batch, timed)))
            )
        ms_batch = 1000 * (time.perf_counter() - started) / timed
        for start in range(timed, len(seeds), batch):
            images += renderer.render_many(
                params, requests(range(start, min(start + batch, len(seeds))))
            )
    accuracy = oracle_accuracy(images, traits)
    style_reference = (
        _style_reference(scorer, collection.style_image_paths())
        if collection.style_images
        else None
    )
    accepted = [
        check_image(
            scorer, image, collection.style_prompt, collection.clip_threshold,
            traits=trait_checks_for(collection, t), trait_margin=collection.trait_margin,
            style_reference=style_reference,
            style_reference_threshold=collection.style_images_threshold,
        ).passed
        for image, t in zip(images, traits, strict=True)
    ]  # fmt: skip
    distance = 0.0
    if teacher is not None:
        distance = float(
            np.mean(
                [
                    np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean()
                    for a, b in zip(images, teacher, strict=True)
                ]
            )
        )
    return Row(
        variant,
        ms_batch1,
        ms_batch,
        accuracy["all"],
        {k: v for k, v in accuracy.items() if k != "all"},
        sum(accepted) / len(accepted),
        distance,
        images=images,
    )


def _through_worker(collections: dict[Variant, Collection], n: int, scratch: Path) -> dict:
    """Tokens per hour of each variant's collection through one real ``rundramatiq`` render
    worker (its warm pool holds every variant), ``n`` new tokens each, one variant at a time:
    seconds from the worker's first claim to its last accepted render."""
    from generation import stages

    log_path = scratch / "render-worker.log"
    tokens: dict[Variant, list[Token]] = {}
    for variant, collection in collections.items():
        tokens[variant] = [
            Token.objects.create(
                collection=collection, token_id=i, owner="0x" + "11" * 20,
                mint_tx_hash=f"0x{i:064x}", mint_log_index=0, mint_block_number=1,
                mint_block_hash="0x" + "22" * 32,
                expected_seed="0x" + token_seed(10_000 + i).hex(),
                seed="0x" + token_seed(10_000 + i).hex(),
                status=Status.SEED_COMMITTED,
            )
            for i in range(1, n + 1)
        ]  # fmt: skip
    env = {
        **os.environ,
        "DATABASE_URL": current_database_url(),
        "RENDER_CACHE_DIR": str(scratch / "queue"),
        "RENDER_DEVICE": "cpu",
        "MODEL_ROOTS": ",".join(str(root) for root in settings.MODEL_ROOTS),
    }
    worker = subprocess.Popen(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "rundramatiq",
         "--processes", "1", "--threads", str(settings.RENDER_BATCH_SIZE), "--queues", "render",
         "--worker-shutdown-timeout", "5000"],
        env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    rates = {}
    try:
        deadline = time.monotonic() + 600
        last = collections[list(collections)[-1]].slug
        while f"warm: {last} " not in log_path.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError(f"the render worker did not warm up: see {log_path}")
            time.sleep(0.2)
        for variant, batch in tokens.items():
            for token in batch:
                stages.send(stages.RENDER, token.pk)
            pks = [t.pk for t in batch]
            done = {Status.RENDERED, Status.NEEDS_REVIEW, Status.FAILED}
            deadline = time.monotonic() + 900
            while Token.objects.filter(pk__in=pks, status__in=done).count() < len(pks):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise BenchmarkError(f"the queue did not finish: see {log_path}")
                time.sleep(0.05)
            history = TokenEvent.objects.filter(token_id__in=pks)
            first = history.filter(status=Status.RENDERING).aggregate(at=Min("at"))["at"]
            end = history.filter(status__in=done).aggregate(at=Max("at"))["at"]
            rates[variant] = 3600 * len(pks) / max((end - first).total_seconds(), 1e-6)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return rates


def best_line(rows: Sequence[Row]) -> str:
    """``best: <variant> <speedup>x at <accuracy change> accuracy points``: the fastest
    variant within :data:`TARGET_POINTS` of the teacher's accuracy."""
    base = next(r for r in rows if r.variant == BASELINE)
    within = [r for r in rows if (base.accuracy - r.accuracy) * 100 <= TARGET_POINTS]
    best = max(within, key=lambda r: r.speedup)
    change = (best.accuracy - base.accuracy) * 100
    return f"best: {best.variant.name} {best.speedup:.1f}x at {change:+.1f} accuracy points"


def report(result: dict[str, Any]) -> list[str]:
    rows: list[Row] = result["rows"]
    batch = result["batch"]
    base = next(r for r in rows if r.variant == BASELINE)
    lines = [
        f"| variant | steps | guidance | ms/image, batch 1 | ms/image, batch {batch} | "
        "tokens/hour (worker) | worker speedup | speedup | trait accuracy | change (points) | "
        "gate accepts | pixel distance to teacher |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        rate = worker = "—"
        if r.tokens_per_hour is not None and base.tokens_per_hour:
            rate = f"{r.tokens_per_hour:,.0f}"
            worker = f"{r.tokens_per_hour / base.tokens_per_hour:.2f}x"
        lines.append(
            f"| {r.variant.name} | {r.variant.steps} | {r.variant.guidance:g} | "
            f"{r.ms_batch1:.0f} | {r.ms_batch:.0f} | {rate} | {worker} | {r.speedup:.2f}x | "
            f"{r.accuracy:.3f} | {(r.accuracy - base.accuracy) * 100:+.1f} | "
            f"{r.accepted:.3f} | {r.pixel_distance:.1f} |"
        )
    for name in result["missing"]:
        lines.append(f"| {name} | not measured in this run | | | | | | | | | | |")
    lines += [
        "",
        "float16 / bfloat16 on CUDA (RENDER_DTYPE; the default there): not measured, no GPU "
        "on this machine. TensorRT: not built.",
        "",
        "Per category (oracle, first renders):",
        "",
        "| variant | " + " | ".join(base.per_category) + " |",
        "|---|" + "--:|" * len(base.per_category),
    ]
    for r in rows:
        lines.append(
            f"| {r.variant.name} | "
            + " | ".join(f"{v:.3f}" for v in r.per_category.values())
            + " |"
        )
    best = best_line(rows)
    target = next(r for r in rows if best.startswith(f"best: {r.variant.name} "))
    met = target.speedup >= TARGET_SPEEDUP
    lines += [
        "",
        f"Target (the founding article): at least {TARGET_SPEEDUP:g}x the teacher at no more "
        f"than {TARGET_POINTS:g} points of trait accuracy lost: {'met' if met else 'not met'}.",
        "",
        best,
    ]
    return lines


def machine() -> str:
    import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {date.today().isoformat()}"
    )


def write_report(path: Path, result: dict[str, Any], lines: list[str], command: str) -> None:
    """The table as the ``bench-latency`` section of ``path`` (docs/benchmarks.md)."""
    write_section(
        path,
        "bench-latency",
        [
            "## Latency levers",
            "",
            f"`{command}` on {machine()}: {result['tokens']} tokens of the reference world "
            "collection (same seeds, traits and prompts for every variant), in-process figures "
            f"on one torch thread; tokens/hour through one `rundramatiq` render worker "
            f"({settings.RENDER_BATCH_SIZE} threads, its default torch threads, the gate and "
            f"re-renders included, {result['worker_tokens']} tokens per variant). Speedup: "
            f"ms/image at batch {result['batch']} against the float32 teacher at its "
            "configured 20 steps. Trait accuracy: the world oracle reads every category "
            "right on the first render. Levers: docs/latency.md.",
            "",
            *lines,
        ],
    )
