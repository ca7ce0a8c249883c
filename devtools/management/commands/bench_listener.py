"""``manage.py bench_listener`` (what ``make bench-listener`` calls): see
devtools/listener_bench.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from devtools import listener_bench
from devtools.errors import BenchmarkError


class Command(BaseCommand):
    help = "Time the chain listener catching up on N mints (fresh anvil, fresh database)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--mints", type=int, default=10_000)
        parser.add_argument("--per-tx", type=int, default=50)
        parser.add_argument("--log-range", type=int, default=5_000)
        parser.add_argument("--write", type=Path, help="update this markdown file's section")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            figures = listener_bench.run_listener_bench(
                options["mints"], options["per_tx"], options["log_range"]
            )
        except BenchmarkError as exc:
            raise CommandError(str(exc)) from exc
        lines = listener_bench.report(figures)
        self.stdout.write("\n".join(lines))
        if options["write"]:
            listener_bench.write_report(options["write"], lines)
            self.stdout.write(f"wrote {options['write']}")
