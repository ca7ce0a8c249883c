"""``manage.py soak`` (what ``make soak`` runs): mints through the whole pipeline while a
worker is SIGKILLed and Redis restarts (see mintsite/soak.py); prints minted, published and
lost, and exits non-zero when a token was lost.

It runs on a throwaway database (Django's test database: ``test_<name>_<pid>`` on PostgreSQL,
a file under var/ on SQLite), created and dropped here, so it never touches the stack's own.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection


class Command(BaseCommand):
    help = "Mint N tokens through the whole pipeline with a worker killed and Redis restarted."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--mints", type=int, default=1000)
        parser.add_argument("--kill-at", type=float, default=0.3, help="fraction rendered")
        parser.add_argument("--restart-at", type=float, default=0.6, help="fraction rendered")
        parser.add_argument("--stall-seconds", type=float, default=180.0)

    def handle(self, *args: Any, **options: Any) -> None:
        from generation.reference_models import build_reference_models, manifest_matches
        from mintsite.soak import run_soak

        if options["mints"] < 1:
            raise CommandError(f"--mints must be at least 1, not {options['mints']}")
        if not 0 <= options["kill_at"] <= options["restart_at"] <= 1:
            raise CommandError("need 0 <= --kill-at <= --restart-at <= 1")
        from django.conf import settings

        if not manifest_matches(settings.REFERENCE_MODELS_DIR):
            build_reference_models(settings.REFERENCE_MODELS_DIR)
        # the soak's pins stay out of the stack's store (var/ipfs): the workers get the same dir
        settings.IPFS_STORE_DIR = Path(tempfile.mkdtemp(prefix="mint-soak-ipfs-"))
        original = connection.settings_dict["NAME"]
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
        try:
            report = run_soak(
                options["mints"],
                kill_at=options["kill_at"],
                restart_at=options["restart_at"],
                stall_seconds=options["stall_seconds"],
                say=self.stdout.write,
            )
        finally:
            connection.creation.destroy_test_db(original, verbosity=0)
        for line in report.lines():
            self.stdout.write(line)
        if report.lost:
            sys.exit(1)
