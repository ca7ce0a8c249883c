"""``manage.py bench_latency`` (what ``make bench-latency`` calls): see devtools/latency_bench.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from devtools import latency_bench
from devtools.errors import BenchmarkError


class Command(BaseCommand):
    help = "The latency levers side by side on the reference world: speed, accuracy, gate."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--tokens", type=int, default=128, help="tokens per variant")
        parser.add_argument(
            "--worker-tokens",
            type=int,
            default=24,
            help="tokens per variant through a real render worker (0: skip the worker)",
        )
        parser.add_argument(
            "--variants",
            help="comma-separated variant names to run (default: all; the teacher float32 "
            "baseline is always run)",
        )
        parser.add_argument("--write", type=Path, help="update this markdown file's section")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["tokens"] < 1 or options["worker_tokens"] < 0:
            raise CommandError("--tokens must be at least 1 and --worker-tokens at least 0")
        variants = latency_bench.VARIANTS
        if options["variants"]:
            names = {name.strip() for name in options["variants"].split(",")}
            known = {v.name for v in variants}
            if names - known:
                raise CommandError(
                    f"--variants: unknown {sorted(names - known)}; known: {sorted(known)}"
                )
            variants = tuple(v for v in variants if v.name in names or v == latency_bench.BASELINE)

        def log(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            result = latency_bench.run_latency_bench(
                options["tokens"], options["worker_tokens"], variants, log
            )
        except BenchmarkError as exc:
            raise CommandError(str(exc)) from exc
        lines = latency_bench.report(result)
        self.stdout.write("\n".join(lines))
        if options["write"]:
            command = "make bench-latency"
            latency_bench.write_report(options["write"], result, lines, command)
            self.stdout.write(f"wrote {options['write']}")
