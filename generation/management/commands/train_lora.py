"""``manage.py train_lora``: train a LoRA adapter that teaches the reference world's diffusion
model a style it never drew, then measure it.

A thin shell over :mod:`generation.reference_world.lora_training`: trains deterministically on
one CPU thread on world images drawn in ``--style``, saves ``pytorch_lora_weights.safetensors``
(the base model's fingerprint in its header), ``lora_training.json`` and the style's reference
images into ``OUT/<style>/``, then renders held-out captions with the adapter through the
project's renderer and prints what the world's pixel oracle reads and how many renders carry
the style. The committed adapter is ``models/reference-world/lora/top-left``
(docs/lora.md).

``--clip`` then trains the style's gate CLIP into ``OUT/<style>/clip/``: the world CLIP's
training (generation/reference_world/clip_training.py) with world images drawn in the style,
samples rendered with the adapter, and the style's prompt, so a collection that names the
adapter can have its gate refuse renders made without it; it prints the threshold that tells
the two apart on held-out renders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

DEFAULT_BASE = Path("models/reference-world/diffusion")
DEFAULT_OUT = Path("var/reference-world/lora")


class Command(BaseCommand):
    help = "Train a LoRA adapter on the reference world's diffusion model (one CPU thread)."

    def add_arguments(self, parser: Any) -> None:
        from generation.reference_world.world import STYLES

        parser.add_argument(
            "--style",
            default="top-left",
            choices=sorted(STYLES),
            help="the style to teach (default top-left)",
        )
        parser.add_argument(
            "--base",
            type=Path,
            default=DEFAULT_BASE,
            help=f"the diffusers folder of the base model (default {DEFAULT_BASE})",
        )
        parser.add_argument(
            "--out",
            type=Path,
            default=DEFAULT_OUT,
            help=f"the adapter goes into OUT/<style>/ (default {DEFAULT_OUT})",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of weights and batches")
        parser.add_argument(
            "--clip",
            action="store_true",
            help="instead of the adapter, train the style's gate CLIP into OUT/<style>/clip/ "
            "(needs the adapter in OUT/<style>/: train it first)",
        )
        parser.add_argument("--steps", type=int, help="training steps (default 700; --clip: 3000)")
        parser.add_argument(
            "--images",
            type=int,
            help="styled training images (default 2000; --clip: world images, 12000, and half "
            "as many again in the style)",
        )
        parser.add_argument(
            "--samples",
            type=int,
            help="--clip: diffusion samples with the adapter and as many without it, labelled "
            "by the oracle (default 1000 each)",
        )
        parser.add_argument("--rank", type=int, help="LoRA rank, alpha the same (default 4)")
        parser.add_argument(
            "--evaluate",
            type=int,
            default=32,
            metavar="N",
            help="render N held-out captions with the adapter afterwards (0: skip; default 32)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from generation.reference_world.collection import WEIGHT_NAME
        from generation.reference_world.lora_training import (
            LoraTraining,
            evaluate_adapter,
            train_lora,
        )

        base: Path = options["base"]
        if not (base / "model_index.json").is_file():
            raise CommandError(f"--base {base}: no diffusers folder (model_index.json) there")
        for name in ("steps", "images", "rank", "samples"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name} must be at least 1, got {options[name]}")
        if options["clip"]:
            self._clip(base, options)
            return
        settings = {
            name: options[name] for name in ("steps", "images", "rank") if options[name] is not None
        }
        training = LoraTraining(style=options["style"], seed=options["seed"], **settings)
        dest: Path = options["out"] / options["style"]
        record = train_lora(base, dest, training, log=self.stdout.write)
        self.stdout.write(
            f"trained in {record['seconds']['total']} s (one thread), loss "
            f"{record['first_loss']:.4f} -> {record['final_loss']:.4f}, "
            f"{record['lora_parameters']} LoRA parameters, "
            f"{record['weights_bytes'] / 1e3:.0f} KB: {dest / WEIGHT_NAME}"
        )
        self.stdout.write(f"  fingerprint {record['fingerprint']}")
        self.stdout.write(f"  base model {record['base_fingerprint']}")
        count = options["evaluate"]
        if count:
            for label, scale in (("without the adapter", None), ("with the adapter", 1.0)):
                figures = evaluate_adapter(
                    base, dest / WEIGHT_NAME, training.style, count=count, scale=scale
                )
                accuracy = ", ".join(f"{k} {v:.2f}" for k, v in figures["accuracy"].items())
                self.stdout.write(
                    f"{count} renders {label}: in the style {figures['styled']:.2f}; oracle "
                    f"accuracy {accuracy}; {figures['seconds_per_image'] * 1000:.0f} ms/image"
                )

    def _clip(self, base: Path, options: dict[str, Any]) -> None:
        from generation.reference_world.clip_training import (
            ClipTraining,
            evaluate_style,
            train_clip,
        )
        from generation.reference_world.collection import WEIGHT_NAME

        style: str = options["style"]
        folder: Path = options["out"] / style
        adapter = folder / WEIGHT_NAME
        if not adapter.is_file():
            raise CommandError(
                f"--clip needs the {style} adapter at {adapter}: train it first "
                f"(manage.py train_lora --style {style} --out {options['out']})"
            )
        samples = options["samples"] or 1000
        settings = {name: options[name] for name in ("steps", "images") if options[name]}
        training = ClipTraining(
            seed=options["seed"],
            styles=(style,),
            generated=samples,
            adapter_samples=samples,
            **settings,
        )
        dest = folder / "clip"
        record = train_clip(
            dest, training, diffusion_dir=base, adapters={style: adapter}, log=self.stdout.write
        )
        self.stdout.write(
            f"trained in {record['seconds']} s (one thread), final loss "
            f"{record['final_loss']:.4f}: {dest}"
        )
        self.stdout.write(f"  fingerprint {record['fingerprint']}")
        count = options["evaluate"]
        if count:
            figures = evaluate_style(dest, style, diffusion_dir=base, adapter=adapter, count=count)
            self.stdout.write(json.dumps(figures, indent=2))
            self.stdout.write(
                f"style prompt {figures['prompt']!r}: threshold {figures['threshold']} refuses "
                f"{figures['renders'] - figures['refuse_accepted']} of {figures['renders']} "
                f"renders without the adapter and accepts "
                f"{figures['renders'] - figures['accept_refused']} of {figures['renders']} with it"
            )
