"""The reference world's diffusion pipeline (generation/reference_world/diffusion_training.py).

A few training steps on a few images: what matters here is the saved layout (the one
``StableDiffusionPipeline.from_pretrained`` and the project's renderer load), the command's
report, and that training is deterministic. docs/reference-world-diffusion.md gives the full
run's figures. No database.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from django.core.management import call_command

from generation.reference_models import model_fingerprint
from generation.reference_world.clip_training import TRAINING_RECORD
from generation.reference_world.diffusion_training import DiffusionTraining, train_diffusion
from generation.reference_world.world import CATEGORIES, IMAGE_SIZE

SHORT = {"images": 64, "vae_steps": 3, "unet_steps": 3}


def _weights(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*.safetensors"))
    }


def test_the_command_trains_a_pipeline_diffusers_loads_and_the_same_seed_the_same_bytes(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    call_command(
        "train_reference_world",
        "--diffusion",
        "--out",
        str(tmp_path),
        "--seed",
        "2",
        "--images",
        "64",
        "--vae-steps",
        "3",
        "--unet-steps",
        "3",
        "--evaluate",
        "8",
        "--sample-steps",
        "2",
        stdout=out,
    )
    report = out.getvalue()
    folder = tmp_path / "diffusion"
    # The command reports the stages' times, the VAE's reconstructions and the samples (drawn
    # through the project's renderer from the saved folder), trait by trait
    assert "VAE trained in" in report and "UNet trained in" in report
    table = report[report.index("oracle accuracy per trait") :]
    assert all(name in table for name in CATEGORIES)
    assert "VAE reconstructions" in table and "samples, 2 steps, guidance 4" in table
    assert f"fingerprint {model_fingerprint(folder)}" in report
    record = json.loads((folder / TRAINING_RECORD).read_text())
    assert record["training"]["seed"] == 2 and record["threads"] == 1
    assert record["training"]["unet_steps"] == 3

    # Trained again with the same seed: the same bytes in every weights file
    again = train_diffusion(
        tmp_path / "again", DiffusionTraining(seed=2, **SHORT), vae_check=0, log=lambda _: None
    )
    weights = _weights(folder)
    assert set(weights) == {
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    }
    assert weights == _weights(tmp_path / "again")
    assert again["fingerprint"] == record["fingerprint"] == model_fingerprint(folder)

    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline

    # The layout of the project's reference pipeline: loads with diffusers' own loader
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    assert isinstance(pipe.scheduler, DDIMScheduler) and isinstance(pipe.vae, AutoencoderKL)
    assert (folder / "tokenizer" / "vocab.json").exists()
    assert (folder / "tokenizer" / "merges.txt").exists()
    assert pipe.vae.config.scaling_factor == record["latent_scaling_factor"] != 0.18215
    image = pipe(
        "a small red circle on a dark background, no frame",
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    # its default size is the world's: UNet sample size times the VAE's scale factor
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE)


def test_samples_for_the_gates_clip_are_labelled_by_what_the_oracle_reads() -> None:
    """At 2 sampler steps the committed model draws many traits wrong: the samples CLIP trains
    on (``train_reference_world --clip --generated``) carry the traits the oracle reads in
    them, not the caption they were drawn from."""
    from generation.reference_world.oracle import read_traits
    from generation.reference_world.samples import oracle_labelled_samples
    from generation.reference_world.world import caption, dataset

    model = Path(__file__).resolve().parent.parent / "models" / "reference-world" / "diffusion"
    samples = oracle_labelled_samples(model, 32, 77, steps=2)
    assert samples, "the oracle read no sample"
    for sample in samples:
        assert read_traits(sample.image).traits == sample.traits
        assert sample.caption == caption(sample.traits)
    drawn = sorted(item.caption for item in dataset(32, 77))
    assert sorted(sample.caption for sample in samples) != drawn


def test_misshapen_samples_are_kept_as_images_no_shape_and_not_the_style_is_true_of() -> None:
    """``train_reference_world --clip --misshapen``: few-step samples whose shape the oracle
    cannot read are trained as ``misshapen`` images: true of their colour, background, size and
    edition prompts and of "a misshapen blob", never of a shape prompt, a caption or the style
    prompt (so the gate's style and shape checks learn to score them low)."""
    import torch

    from generation.reference_world.clip_training import (
        OFF_WORLD_TEXTS,
        ClipTraining,
        OtherImage,
        _queries,
        _training_set,
    )
    from generation.reference_world.oracle import read_traits
    from generation.reference_world.samples import misshapen_readings, oracle_read_samples
    from generation.reference_world.world import CATEGORIES, RARITY, STYLE_PROMPT

    model = Path(__file__).resolve().parent.parent / "models" / "reference-world" / "diffusion"
    samples = oracle_read_samples(model, 48, 4_300_001, steps=3)
    misshapen = misshapen_readings(samples)
    assert misshapen, "no misshapen sample among 48 at 3 steps"
    assert len(misshapen) < len(samples)
    for traits, image in misshapen:
        read = read_traits(image).traits
        assert read["shape"] is None
        assert traits == {name: read[name] for name in CATEGORIES if name != "shape"}

    traits, image = misshapen[0]
    data = _training_set(
        ClipTraining(images=4, off_world_share=0.0),
        lambda _: torch.zeros(3, 64, 64),
        [],
        [OtherImage("misshapen", image, traits)],
    )
    row = data.truth[-1]
    true_texts = {query.text for query, true in zip(_queries(), row.tolist(), strict=True) if true}
    prompts = {
        category["name"]: {option["name"]: option["prompt"] for option in category["options"]}
        for category in RARITY["categories"]
    }
    assert true_texts == {OFF_WORLD_TEXTS["misshapen"]} | {
        prompts[name][option] for name, option in traits.items()
    }
    assert STYLE_PROMPT not in true_texts
    assert not true_texts & set(prompts["shape"].values())
