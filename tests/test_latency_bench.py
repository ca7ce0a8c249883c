"""``make bench-latency``'s verdict and its command line (devtools/latency_bench.py); the bench's
figures themselves are in docs/benchmarks.md, measured, never asserted."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from devtools.latency_bench import BASELINE, VARIANTS, Row, best_line, report


def row(index: int, ms: float, accuracy: float) -> Row:
    return Row(VARIANTS[index], ms, ms, accuracy, {"shape": accuracy}, 0.9, 1.0)


def result(rows: list[Row]) -> dict:
    base = rows[0]
    for r in rows:
        r.speedup = base.ms_batch / r.ms_batch
    return {"rows": rows, "batch": 4, "missing": []}


def test_the_best_variant_is_the_fastest_that_loses_at_most_two_points() -> None:
    rows = result([row(0, 400, 0.97), row(4, 20, 0.80), row(2, 80, 0.955), row(3, 50, 0.94)])[
        "rows"
    ]
    # 1 step is 20x faster but 17 points worse; 2 steps lose 3; 4 steps lose 1.5
    assert best_line(rows) == "best: student 4 steps 5.0x at -1.5 accuracy points"


def test_the_teacher_is_the_best_when_every_lever_costs_accuracy() -> None:
    rows = result([row(0, 400, 0.97), row(2, 80, 0.90)])["rows"]
    assert best_line(rows) == f"best: {BASELINE.name} 1.0x at +0.0 accuracy points"


def test_the_report_ends_with_the_best_line_and_says_whether_the_target_is_met() -> None:
    lines = report(result([row(0, 400, 0.97), row(2, 80, 0.965)]))
    assert lines[-1] == "best: student 4 steps 5.0x at -0.5 accuracy points"
    assert any("at least 4x the teacher" in line and line.endswith(": met.") for line in lines)
    lines = report(result([row(0, 400, 0.97), row(2, 200, 0.965)]))
    assert any(line.endswith(": not met.") for line in lines)


def test_an_unknown_variant_is_refused_by_name() -> None:
    with pytest.raises(CommandError, match="--variants: unknown \\['student 3 steps'\\]"):
        call_command("bench_latency", "--variants", "student 2 steps,student 3 steps")
