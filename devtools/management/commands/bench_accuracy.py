"""``manage.py bench_accuracy`` (what ``make bench-accuracy`` calls): see devtools/accuracy_bench.py."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from devtools import accuracy_bench
from devtools.errors import BenchmarkError


class Command(BaseCommand):
    help = (
        "Render reference-world tokens through the render stage and measure the CLIP gate with "
        "the world's pixel oracle: trait accuracy gate on/off, confusion per check, cost."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--tokens", type=int, default=300, help="tokens to render (300)")
        parser.add_argument(
            "--wrong", type=int, default=60, help="deliberately wrong images per source (about)"
        )
        parser.add_argument(
            "--models",
            type=Path,
            default=None,
            help="folder with clip/ and diffusion/ (default models/reference-world)",
        )
        parser.add_argument("--device", default="cpu", help="torch device (cpu)")
        parser.add_argument(
            "--calibration-samples",
            type=int,
            default=96,
            help="calibrate_gate samples for the trade-off curve (and the thresholds of a "
            "collection that has none)",
        )
        parser.add_argument(
            "--target-acceptance",
            type=float,
            default=0.9,
            help="calibrate_gate's target for a collection without thresholds (0.9, its own)",
        )
        parser.add_argument(
            "--timing-tokens", type=int, default=24, help="tokens timed render vs gate"
        )
        parser.add_argument(
            "--race-pairs",
            type=int,
            default=20,
            help="pairs of tokens rendering the same image in two workers at once (20)",
        )
        parser.add_argument("--write", type=Path, help="write this markdown file and its PNGs")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["tokens"] < 2:
            raise CommandError("--tokens must be at least 2")
        logging.disable(logging.INFO)  # the render stage logs every attempt; the table says it
        try:
            run = accuracy_bench.run_accuracy_bench(
                tokens=options["tokens"],
                wrong=options["wrong"],
                models=options["models"],
                device=options["device"],
                calibration_samples=options["calibration_samples"],
                timing_tokens=options["timing_tokens"],
                target_acceptance=options["target_acceptance"],
                race_pairs=options["race_pairs"],
                progress=lambda text: self.stderr.write(f"bench_accuracy: {text}"),
            )
        except BenchmarkError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            logging.disable(logging.NOTSET)
        lines = accuracy_bench.report(run)
        try:
            if options["write"]:
                command = "manage.py bench_accuracy " + shlex.join(sys.argv[2:])
                for path in accuracy_bench.write_report(options["write"], run, lines, command):
                    self.stderr.write(f"wrote {path}")
        finally:
            self.stdout.write("\n".join(lines))
