"""``manage.py distill``: train a few-step student from a diffusion model on the reference world.

A thin shell over :mod:`generation.reference_world.distillation` (latent consistency
distillation; that module's docstring says why, and how a step works): trains on one CPU
thread, saves the student as a diffusers folder with ``LCMScheduler``, then renders held-out
captions at each of ``--evaluate-steps`` and prints the world oracle's trait accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

DEFAULT_TEACHER = Path("models/reference-world/diffusion")
DEFAULT_OUT = Path("var/reference-world/student")


class Command(BaseCommand):
    help = "Distil a few-step student (LCMScheduler) from a diffusers model on the world."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--teacher",
            type=Path,
            default=DEFAULT_TEACHER,
            help=f"the teacher's diffusers folder (default {DEFAULT_TEACHER})",
        )
        parser.add_argument(
            "--out", type=Path, default=DEFAULT_OUT, help=f"student folder (default {DEFAULT_OUT})"
        )
        parser.add_argument("--steps", type=int, default=1500, help="training steps")
        parser.add_argument("--images", type=int, default=4000, help="world images to learn from")
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument("--learning-rate", type=float, default=1e-4)
        parser.add_argument(
            "--guidance",
            type=float,
            default=4.0,
            help="the teacher's guidance scale the student learns (it renders at 1)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--evaluate",
            type=int,
            default=64,
            help="held-out captions the oracle judges per step count (0: skip)",
        )
        parser.add_argument(
            "--evaluate-steps", default="4,2,1", help="student step counts to measure"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from generation.reference_world.distillation import (
            Distillation,
            distil,
            evaluate_student,
        )
        from generation.render_levers import DISTILLATION_RECORD

        teacher: Path = options["teacher"]
        if not (teacher / "model_index.json").is_file():
            raise CommandError(f"--teacher {teacher}: not a diffusers folder (no model_index.json)")
        try:
            counts = [int(part) for part in options["evaluate_steps"].split(",") if part]
        except ValueError as exc:
            raise CommandError(f"--evaluate-steps: {exc}") from exc
        for name in ("steps", "images", "batch_size", "learning_rate", "guidance"):
            if options[name] <= 0:
                raise CommandError(f"--{name.replace('_', '-')} must be positive")
        training = Distillation(
            seed=options["seed"],
            steps=options["steps"],
            images=options["images"],
            batch_size=options["batch_size"],
            learning_rate=options["learning_rate"],
            guidance=options["guidance"],
        )

        def log(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        out: Path = options["out"]
        record = distil(teacher, out, training, log=log)
        log(f"student saved to {out}: {record['fingerprint']} in {record['seconds']:.0f} s")
        if options["evaluate"]:
            record["evaluation"] = []
            for steps in counts:
                result = evaluate_student(out, count=options["evaluate"], steps=steps)
                record["evaluation"].append(result)
                figures = ", ".join(f"{k} {v:.3f}" for k, v in result["accuracy"].items())
                log(f"  {steps} step(s), oracle accuracy: {figures}")
            (out / DISTILLATION_RECORD).write_text(
                json.dumps(record, indent=2, sort_keys=True) + "\n"
            )
