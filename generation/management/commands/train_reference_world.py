"""``manage.py train_reference_world --clip``: train the gate's CLIP on the reference world.

A thin shell over :mod:`generation.reference_world.clip_training`: trains deterministically on
one CPU thread, saves the model in open_clip's local-dir layout, then measures it on held-out
world images through the gate's own scorer and prints the figures. The project's reference
models (``var/models``, ``build_reference_models``) are not touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

DEFAULT_OUT = Path("var/reference-world")


class Command(BaseCommand):
    help = "Train the reference world's CLIP model (deterministic, minutes on one CPU thread)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--clip", action="store_true", help="train the open_clip model (the gate's CLIP)"
        )
        parser.add_argument(
            "--out",
            type=Path,
            default=DEFAULT_OUT,
            help=f"folder to write clip/ into (default {DEFAULT_OUT})",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of weights and batches")
        parser.add_argument("--steps", type=int, help="training steps (default 3000)")
        parser.add_argument("--images", type=int, help="training images (default 12000)")
        parser.add_argument(
            "--evaluate",
            type=int,
            default=500,
            metavar="N",
            help="measure on N held-out world images afterwards (0: skip)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from generation.reference_world.clip_training import (
            ClipTraining,
            evaluate_clip,
            train_clip,
        )

        if not options["clip"]:
            raise CommandError("say what to train: --clip (the diffusion model comes later)")
        settings = {
            name: options[name] for name in ("steps", "images") if options[name] is not None
        }
        training = ClipTraining(seed=options["seed"], **settings)
        dest: Path = options["out"] / "clip"
        record = train_clip(dest, training, log=self.stdout.write)
        weights = sum(p.stat().st_size for p in dest.glob("*.safetensors"))
        self.stdout.write(
            f"trained in {record['seconds']} s (one thread), final loss "
            f"{record['final_loss']:.4f}, weights {weights / 1e6:.1f} MB: {dest}"
        )
        self.stdout.write(f"  fingerprint {record['fingerprint']}")
        if options["evaluate"]:
            figures = evaluate_clip(dest, count=options["evaluate"])
            self.stdout.write(json.dumps(figures, indent=2))
