"""``manage.py bench_load`` (what ``make bench-load`` calls): see devtools/load/."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from devtools.errors import BenchmarkError
from devtools.load import report
from devtools.load.bench import run_load_bench
from devtools.load.options import LoadOptions

DEFAULTS = LoadOptions()


class Command(BaseCommand):
    help = "Load the token status endpoint with locust, pipeline idle and running, side by side."

    def add_arguments(self, parser: Any) -> None:
        d = DEFAULTS
        parser.add_argument("--users", type=int, default=d.users, help="concurrent collectors")
        parser.add_argument(
            "--spawn-rate", type=float, default=d.spawn_rate, help="users started per s"
        )
        parser.add_argument("--duration", type=int, default=d.duration, help="seconds per phase")
        parser.add_argument(
            "--workers", type=int, default=d.workers, help="gunicorn worker processes"
        )
        parser.add_argument(
            "--threads", type=int, default=d.threads, help="threads per gunicorn worker"
        )
        parser.add_argument(
            "--client",
            choices=["locust", "wrk"],
            default=d.client,
            help="the load client: locust (Python) or wrk (C; Debian: apt-get install wrk)",
        )
        parser.add_argument(
            "--client-processes",
            type=int,
            default=d.client_processes,
            help="locust processes (event loops)",
        )
        parser.add_argument("--steps", type=int, default=d.steps, help="diffusion steps per render")
        parser.add_argument(
            "--render-nice",
            type=int,
            default=d.render_nice,
            help="a third phase with the render worker at this nice value (0: no third phase)",
        )
        parser.add_argument(
            "--render-idle",
            action=argparse.BooleanOptionalAction,
            default=d.render_idle,
            help="a phase with the render worker under SCHED_IDLE",
        )
        parser.add_argument(
            "--render-cpus",
            type=int,
            default=d.render_cpus,
            help="a last phase with the render worker on this many cores only (0: none)",
        )
        for name, meaning in (
            ("sse_step", "SSE capacity: add this many streams at a time"),
            ("sse_max", "SSE capacity: at most this many streams"),
            ("sse_seconds", "SSE capacity: seconds of polling measured at each step"),
            ("sse_probes", "SSE capacity: clients polling the status endpoint at each step"),
        ):
            flag = "--" + name.replace("_", "-")
            parser.add_argument(flag, type=int, default=getattr(d, name), help=meaning)
        parser.add_argument(
            "--sse-only",
            action="store_true",
            help="only the SSE capacity step, on the web tier alone (no workers, no locust)",
        )
        parser.add_argument("--write", type=Path, help="update this markdown file's section")

    def handle(self, *args: Any, **options: Any) -> None:
        load = LoadOptions(
            users=options["users"],
            spawn_rate=options["spawn_rate"],
            duration=options["duration"],
            workers=options["workers"],
            threads=options["threads"],
            client=options["client"],
            client_processes=options["client_processes"],
            steps=options["steps"],
            render_nice=options["render_nice"],
            render_idle=options["render_idle"],
            render_cpus=options["render_cpus"],
            sse_step=options["sse_step"],
            sse_max=options["sse_max"],
            sse_seconds=options["sse_seconds"],
            sse_probes=options["sse_probes"],
            sse_only=options["sse_only"],
        )
        try:
            figures = run_load_bench(load, say=self.stderr.write)
        except BenchmarkError as exc:
            raise CommandError(str(exc)) from exc
        lines = [] if load.sse_only else [*report.intro(figures, load), "", *report.table(figures)]
        if figures["streams"] is not None:
            lines += ["", *report.streams_report(figures)]
        self.stdout.write("\n".join(lines))
        if options["write"]:
            if not load.sse_only:
                report.write_report(options["write"], figures, load)
            if figures["streams"] is not None:
                report.write_streams_report(options["write"], figures)
            self.stdout.write(f"wrote {options['write']}")
