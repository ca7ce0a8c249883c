"""``manage.py export_onnx --model DIR --out DIR``: a diffusers folder's networks as ONNX.

A thin shell over :func:`generation.onnx_export.export_onnx`. Prints the folder written, the
export's fingerprint (what the provenance records for a render through it) and the source
model's, so a collection's ``onnx_dir`` can be checked against its model later.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from generation.errors import ModelReferenceError
from generation.onnx_export import export_onnx


class Command(BaseCommand):
    help = (
        "Export a diffusers StableDiffusion folder's text encoder, UNet and VAE decoder to "
        "ONNX (text_encoder/, unet/, vae_decoder/ model.onnx and onnx.json) for onnxruntime."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--model", type=Path, required=True, help="diffusers pipeline folder to export"
        )
        parser.add_argument(
            "--out", type=Path, required=True, help="folder to write (replaced if it exists)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        try:
            manifest = export_onnx(options["model"], options["out"])
        except ModelReferenceError as exc:
            raise CommandError(f"--model: {exc}") from exc
        elapsed = time.monotonic() - started
        self.stdout.write(f"{options['out']}")
        self.stdout.write(f"  fingerprint {manifest['fingerprint']}")
        self.stdout.write(f"  exported from {manifest['source_fingerprint']}")
        if options["verbosity"] > 1:
            self.stdout.write(f"  written in {elapsed:.1f} s")
