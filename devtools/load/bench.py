"""One load run: what it needs checked first, a throwaway database, and the phases."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from devtools.errors import BenchmarkError
from devtools.load.options import LoadOptions
from devtools.load.phases import run_phases
from devtools.preflight import bench_broker, bench_namespace, throwaway_database


def check(options: LoadOptions) -> None:
    """Refuse, before anything starts, a run that could not finish."""
    problems = options.problems()
    if problems:
        raise BenchmarkError("; ".join(problems))
    bench_namespace()
    if options.sse_only:
        return  # the web tier alone: no load client, no workers
    if options.client == "locust" and not options.locust.exists():
        raise BenchmarkError(
            f"no {options.locust}: locust is a dev dependency (pip install -e '.[dev]')"
        )
    if options.client == "wrk" and not shutil.which("wrk"):
        raise BenchmarkError("no wrk on PATH: install it (Debian: apt-get install wrk)")
    if not (Path(settings.REFERENCE_MODELS_DIR) / "diffusion").is_dir():
        raise BenchmarkError(f"no reference models in {settings.REFERENCE_MODELS_DIR}: run "
                             "`make models` (manage.py build_reference_models)")  # fmt: skip


def run_load_bench(options: LoadOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The figures of every phase, on a throwaway database and the benchmark's namespace."""
    check(options)
    scratch = Path(tempfile.mkdtemp(prefix="mint-bench-load-"))
    try:
        with bench_broker(), throwaway_database():
            return run_phases(options, scratch, say)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
