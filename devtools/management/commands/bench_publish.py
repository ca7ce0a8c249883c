"""``manage.py bench_publish`` (what ``make bench-publish`` calls): see
devtools/publish_bench.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from devtools import publish_bench


class Command(BaseCommand):
    help = "Time N verified tokens from pinned to FINAL on anvil, batched and one per transaction."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--tokens", type=int, default=500)
        parser.add_argument("--batch-size", type=int, default=settings.PUBLISH_BATCH_SIZE)
        parser.add_argument("--write", type=Path, help="update this markdown file's section")

    def handle(self, *args: Any, **options: Any) -> None:
        runs = publish_bench.run_publish_bench(options["tokens"], options["batch_size"])
        lines = publish_bench.report(options["tokens"], runs)
        self.stdout.write("\n".join(lines))
        if options["write"]:
            publish_bench.write_report(options["write"], lines)
            self.stdout.write(f"wrote {options['write']}")
