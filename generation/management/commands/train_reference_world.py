"""``manage.py train_reference_world --clip | --diffusion | --style-images``: train the
reference world's models, or draw the world collection's style reference images.

A thin shell over :mod:`generation.reference_world.clip_training`: trains deterministically on
one CPU thread, saves the model in open_clip's local-dir layout, then measures it on held-out
world images through the gate's own scorer and prints the figures. ``--diffusion`` does the same
for the diffusion pipeline (:mod:`generation.reference_world.diffusion_training`), judged by
the world's pixel oracle. ``--style-images`` draws the few world images the world collection's
gate compares renders with (generation/reference_world/collection.py). The project's reference
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
            "--diffusion",
            action="store_true",
            help="train the diffusion pipeline (VAE, text encoder, UNet) into OUT/diffusion",
        )
        parser.add_argument(
            "--style-images",
            action="store_true",
            help="draw the world collection's style reference images into OUT/style "
            "(deterministic, no training)",
        )
        parser.add_argument(
            "--vae-steps", type=int, help="--diffusion: VAE training steps (default 2000)"
        )
        parser.add_argument(
            "--unet-steps", type=int, help="--diffusion: UNet training steps (default 5500)"
        )
        parser.add_argument(
            "--vae-decode",
            choices=("sample", "mode"),
            help="--diffusion: the VAE decoder learns from sampled latents (default) or means",
        )
        parser.add_argument(
            "--sample-steps",
            default="4,20",
            help="--diffusion: sampler step counts to measure, comma-separated (default 4,20)",
        )
        parser.add_argument(
            "--guidance", type=float, default=4.0, help="--diffusion: guidance when measuring"
        )
        parser.add_argument(
            "--out",
            type=Path,
            default=DEFAULT_OUT,
            help=f"folder to write clip/ and diffusion/ into (default {DEFAULT_OUT})",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of weights and batches")
        parser.add_argument("--steps", type=int, help="--clip: training steps (default 3000)")
        parser.add_argument(
            "--generated",
            type=int,
            help="--clip: add N samples of OUT/diffusion labelled by the oracle (default 0)",
        )
        parser.add_argument(
            "--low-step-samples",
            type=int,
            metavar="N",
            help="--clip: add N samples at each of --low-steps, labelled by the oracle "
            "(default 0); few-step samples draw more in-between shapes",
        )
        parser.add_argument(
            "--low-steps",
            type=lambda text: tuple(int(part) for part in text.split(",")),
            metavar="S,S",
            help="--clip: the step counts of --low-step-samples (default 3,4)",
        )
        parser.add_argument(
            "--misshapen",
            action="store_true",
            default=None,
            help="--clip: train the samples whose shape the oracle cannot read as misshapen "
            "(no shape and not the style prompt), instead of dropping them",
        )
        parser.add_argument(
            "--images", type=int, help="training images (default 12000; --diffusion 4000)"
        )
        parser.add_argument(
            "--evaluate",
            type=int,
            metavar="N",
            help="measure on N held-out world images afterwards (0: skip); --diffusion: N "
            "samples per step count (default 64) and N VAE reconstructions (default 192)",
        )

    def handle(self, *args: Any, **options: Any) -> None:

        if not (options["clip"] or options["diffusion"] or options["style_images"]):
            raise CommandError("say what to train: --clip, --diffusion or both (or --style-images)")
        if options["style_images"]:
            self._style_images(options["out"])
        if options["diffusion"]:
            self._diffusion(options)
        if options["clip"]:
            self._clip(options)

    def _style_images(self, out: Path) -> None:
        from generation.reference_world.collection import write_style_images

        paths = write_style_images(out)
        self.stdout.write(f"drew {len(paths)} style reference images into {paths[0].parent}")

    def _clip(self, options: dict[str, Any]) -> None:
        from generation.reference_world.clip_training import (
            ClipTraining,
            evaluate_clip,
            train_clip,
        )

        settings = {
            name: options[name]
            for name in (
                "steps",
                "images",
                "generated",
                "low_step_samples",
                "low_steps",
                "misshapen",
            )
            if options[name] is not None
        }
        training = ClipTraining(seed=options["seed"], **settings)
        dest: Path = options["out"] / "clip"
        diffusion_dir: Path | None = None
        if training.generated or training.low_step_samples:
            diffusion_dir = options["out"] / "diffusion"
            if not (diffusion_dir / "model_index.json").is_file():
                raise CommandError(
                    f"--generated and --low-step-samples need a trained diffusion model in "
                    f"{diffusion_dir}: "
                    "train it first (--diffusion)"
                )
        record = train_clip(dest, training, diffusion_dir=diffusion_dir, log=self.stdout.write)
        weights = sum(p.stat().st_size for p in dest.glob("*.safetensors"))
        self.stdout.write(
            f"trained in {record['seconds']} s (one thread), final loss "
            f"{record['final_loss']:.4f}, weights {weights / 1e6:.1f} MB: {dest}"
        )
        self.stdout.write(f"  fingerprint {record['fingerprint']}")
        evaluate = 500 if options["evaluate"] is None else options["evaluate"]
        if evaluate:
            figures = evaluate_clip(dest, count=evaluate, diffusion_dir=diffusion_dir)
            self.stdout.write(json.dumps(figures, indent=2))

    def _diffusion(self, options: dict[str, Any]) -> None:
        from generation.reference_world.diffusion_training import (
            DiffusionTraining,
            evaluate_samples,
            train_diffusion,
        )

        try:
            sample_steps = [int(n) for n in options["sample_steps"].split(",") if n.strip()]
        except ValueError:
            raise CommandError(
                f"--sample-steps {options['sample_steps']!r}: give step counts like 4,20"
            ) from None
        names = ("images", "vae_steps", "unet_steps", "vae_decode")
        settings = {name: options[name] for name in names if options[name] is not None}
        training = DiffusionTraining(seed=options["seed"], **settings)
        evaluate = options["evaluate"]
        dest: Path = options["out"] / "diffusion"
        record = train_diffusion(
            dest, training, vae_check=192 if evaluate is None else evaluate, log=self.stdout.write
        )
        sizes = ", ".join(
            f"{name} {count / 1e6:.2f} M" for name, count in record["parameters"].items()
        )
        seconds = ", ".join(f"{name} {value} s" for name, value in record["seconds"].items())
        self.stdout.write(
            f"trained in {record['seconds']['total']} s (one thread; {seconds}); parameters "
            f"{sizes}; weights {record['weights_bytes'] / 1e6:.1f} MB: {dest}"
        )
        self.stdout.write(f"  fingerprint {record['fingerprint']}")
        rows: list[tuple[str, dict[str, float], float | None]] = []
        if record["vae_reconstruction_accuracy"]:
            rows.append(("VAE reconstructions", record["vae_reconstruction_accuracy"], None))
        count = 64 if evaluate is None else evaluate
        for steps in sample_steps if count else []:
            figures = evaluate_samples(dest, count=count, steps=steps, guidance=options["guidance"])
            label = f"samples, {steps} steps, guidance {options['guidance']:g}"
            rows.append((label, figures["accuracy"], figures["seconds_per_image"]))
        if rows:
            self.stdout.write(_accuracy_table(rows, count))


def _accuracy_table(rows: list[tuple[str, dict[str, float], float | None]], samples: int) -> str:
    """Per-trait oracle accuracy as a text table, one row per measurement."""
    columns = list(rows[0][1])
    width = max(len(label) for label, _, _ in rows)
    lines = [
        f"oracle accuracy per trait ({samples} samples per row)",
        f"{'':{width}}  " + "  ".join(f"{c:>10}" for c in columns) + "   ms/image",
    ]
    for label, accuracy, seconds in rows:
        timing = f"{seconds * 1000:10.0f}" if seconds is not None else f"{'':>10}"
        cells = "  ".join(f"{accuracy[c]:10.2f}" for c in columns)
        lines.append(f"{label:{width}}  {cells} {timing}")
    return "\n".join(lines)
