"""``manage.py build_reference_models``: build the small deterministic reference models.

A thin shell over :func:`generation.reference_models.build_reference_models`; it does nothing
when the manifest is there and every model on disk still has the fingerprint it records.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from generation.reference_models import build_reference_models, manifest_matches, read_manifest


class Command(BaseCommand):
    help = "Build the reference diffusion and CLIP models (deterministic, seconds on a CPU)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--out",
            type=Path,
            default=Path(getattr(settings, "REFERENCE_MODELS_DIR", "var/models")),
            help="folder to write diffusion/, clip/ and manifest.json into",
        )
        parser.add_argument("--seed", type=int, default=0, help="torch seed for the weights")
        parser.add_argument(
            "--force", action="store_true", help="rebuild even when the manifest matches"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        out: Path = options["out"]
        seed: int = options["seed"]
        if not options["force"] and manifest_matches(out, seed=seed):
            manifest = read_manifest(out) or {}
            fingerprints = {
                name: entry["fingerprint"] for name, entry in manifest.get("models", {}).items()
            }
            self._report(out, fingerprints, "up to date", options["verbosity"])
            return
        started = time.monotonic()
        fingerprints = build_reference_models(out, seed=seed)
        elapsed = time.monotonic() - started
        self._report(out, fingerprints, f"built in {elapsed:.1f} s", options["verbosity"])

    def _report(self, out: Path, fingerprints: dict[str, str], state: str, verbosity: int) -> None:
        if verbosity < 1:
            return
        self.stdout.write(f"reference models in {out}: {state}")
        for name, fingerprint in sorted(fingerprints.items()):
            self.stdout.write(f"  {name}: {fingerprint}")
