"""``manage.py export_single_file <diffusers_dir> <out.safetensors>``: one-file SD 1.x export.

A thin shell over :func:`generation.single_file.export_single_file`. Prints the file written
and its fingerprint (``sha256:<hex>``, the same value ``sha256sum`` and the provenance record
give), so the file can be named by a collection and checked later.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from generation.errors import SingleFileError
from generation.reference_models import model_fingerprint
from generation.single_file import export_single_file


class Command(BaseCommand):
    help = (
        "Write a diffusers Stable Diffusion 1.x folder as one .safetensors checkpoint in the "
        "original layout (what StableDiffusionPipeline.from_single_file loads)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("diffusers_dir", type=Path, help="diffusers pipeline folder")
        parser.add_argument("out", type=Path, help="the .safetensors file to write")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        try:
            out = export_single_file(options["diffusers_dir"], options["out"])
        except SingleFileError as exc:
            raise CommandError(str(exc)) from exc
        elapsed = time.monotonic() - started
        self.stdout.write(f"{out}")
        self.stdout.write(f"  {model_fingerprint(out)}")
        if options["verbosity"] > 1:
            self.stdout.write(f"  written in {elapsed:.1f} s")
