"""``manage.py soak`` (what ``make soak`` runs): mints through the whole pipeline while a
worker is SIGKILLed and the broker restarts (devtools/soak.py; ``BROKER_URL=amqp://...`` runs
it on a RabbitMQ node of its own); prints minted, published and lost, and exits non-zero when
a token was lost. It runs on a throwaway database."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from devtools.soak import soak_in_test_database


class Command(BaseCommand):
    help = "Mint N tokens through the whole pipeline with a worker killed and the broker restarted."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--mints", type=int, default=1000)
        parser.add_argument("--kill-at", type=float, default=0.3, help="fraction rendered")
        parser.add_argument("--restart-at", type=float, default=0.6, help="fraction rendered")
        parser.add_argument("--stall-seconds", type=float, default=180.0)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["mints"] < 1:
            raise CommandError(f"--mints must be at least 1, not {options['mints']}")
        if not 0 <= options["kill_at"] <= options["restart_at"] <= 1:
            raise CommandError("need 0 <= --kill-at <= --restart-at <= 1")
        report = soak_in_test_database(
            options["mints"],
            kill_at=options["kill_at"],
            restart_at=options["restart_at"],
            stall_seconds=options["stall_seconds"],
            say=self.stdout.write,
        )
        for line in report.lines():
            self.stdout.write(line)
        if report.lost:
            sys.exit(1)
