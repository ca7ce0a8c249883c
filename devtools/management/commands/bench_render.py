"""``manage.py bench_render`` (what ``make bench`` calls): see devtools/render_bench.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from devtools import render_bench
from devtools.errors import BenchmarkError


class Command(BaseCommand):
    help = "Time render+verify on the reference models: bare loop vs the queue, cold start, cache."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--tokens", type=int, default=48)
        parser.add_argument("--steps", type=int, default=4)
        parser.add_argument("--rounds", type=int, default=3, help="side-by-side pairs")
        parser.add_argument("--write", type=Path, help="update this markdown file's section")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            figures = render_bench.run_render_bench(
                options["tokens"], options["steps"], options["rounds"]
            )
        except BenchmarkError as exc:
            raise CommandError(str(exc)) from exc
        lines = render_bench.report(figures)
        self.stdout.write("\n".join(lines))
        if options["write"]:
            render_bench.write_report(options["write"], lines)
            self.stdout.write(f"wrote {options['write']}")
