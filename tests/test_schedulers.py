"""Per-collection scheduler choice and model references (diffusers folder or single file).

Reference models only, CPU. A scheduler is a real diffusers scheduler built from the model's
own scheduler config; every variant shares the one loaded UNet, VAE and text encoder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation import pipeline
from generation.batching import RenderBatcher
from generation.collection_config import generation_config
from generation.models import SCHEDULER_CHOICES, Collection
from generation.rendering import Renderer, RenderParams, get_renderer
from tests.test_batching import TOLERANCE, max_abs_diff, submit_together
from tests.test_pipeline import make_token

SCHEDULERS = [value for value, _ in SCHEDULER_CHOICES if value]


def params(scheduler: str, i: int = 0) -> RenderParams:
    return RenderParams(
        prompt=f"token {i}: a fox in a forest, oil painting",
        negative_prompt="blurry",
        steps=3,
        guidance=7.5,
        width=64,
        height=64,
        scheduler=scheduler,
    )


@pytest.fixture(scope="module")
def renderer(reference_models: Path) -> Renderer:
    return get_renderer(reference_models / "diffusion", device="cpu")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_offered_scheduler_renders_the_same_image_twice(
    renderer: Renderer, scheduler: str
) -> None:
    first = renderer.render(params(scheduler), b"\x01" * 32, 0)
    again = renderer.render(params(scheduler), b"\x01" * 32, 0)
    assert pixels(first).std() > 1.0  # a picture, not a blank
    assert max_abs_diff(first, again) == 0
    assert renderer.scheduler_for(params(scheduler)) == scheduler
    assert type(renderer.pipeline_for(scheduler).scheduler).__name__ == scheduler
    # the variants share the loaded weights: no second UNet in memory
    assert renderer.pipeline_for(scheduler).unet is renderer.pipe.unet


def test_the_scheduler_changes_the_image(renderer: Renderer) -> None:
    ddim = renderer.render(params("DDIMScheduler"), b"\x02" * 32, 0)
    euler = renderer.render(params("EulerAncestralDiscreteScheduler"), b"\x02" * 32, 0)
    assert max_abs_diff(ddim, euler) > 10 * TOLERANCE


def test_an_ancestral_schedulers_noise_is_each_images_own_in_a_batch(renderer: Renderer) -> None:
    # Euler ancestral draws fresh noise at every step: from each image's own generator, so a
    # batched image still matches its lone render within the float tolerance.
    batcher = RenderBatcher(renderer, max_batch=3, max_wait=0.5)
    requests = [
        (params("EulerAncestralDiscreteScheduler", i), bytes([i + 5]) * 32, 0) for i in range(3)
    ]
    batched = submit_together(batcher, requests)
    assert batcher.batches == 1
    lone = [renderer.render(*request) for request in requests]
    assert max(max_abs_diff(b, a) for b, a in zip(batched, lone, strict=True)) <= TOLERANCE


def test_renders_of_different_schedulers_never_share_a_batch(renderer: Renderer) -> None:
    batcher = RenderBatcher(renderer, max_batch=4, max_wait=0.3)
    requests = [
        (params("DDIMScheduler" if i % 2 else "UniPCMultistepScheduler", i), bytes([i + 1]) * 32, 0)
        for i in range(4)
    ]
    submit_together(batcher, requests)
    assert dict(batcher.batch_sizes) == {2: 2}


@pytest.mark.django_db
def test_a_collections_scheduler_shapes_its_tokens_and_is_recorded(reference_models: Path) -> None:
    own = make_token(reference_models, threshold=-1.0, slug="own-scheduler")
    euler = make_token(
        reference_models,
        threshold=-1.0,
        slug="euler-scheduler",
        scheduler="EulerAncestralDiscreteScheduler",
    )
    assert pipeline.run_render(own.pk) == pipeline.Status.RENDERED
    assert pipeline.run_render(euler.pk) == pipeline.Status.RENDERED
    own.refresh_from_db()
    euler.refresh_from_db()
    # the reference model ships DDIM, which is what an empty choice means
    assert own.render_record["model"]["scheduler"] == "DDIMScheduler"
    assert euler.render_record["model"]["scheduler"] == "EulerAncestralDiscreteScheduler"
    assert own.image_sha256 != euler.image_sha256
    # and the frozen config (whose digest goes on-chain) names the scheduler too
    assert generation_config(euler.collection)["model"] == {
        "fingerprint": euler.render_record["model"]["fingerprint"],
        "format": "diffusers",
        "scheduler": "EulerAncestralDiscreteScheduler",
    }
    assert generation_config(own.collection)["model"]["scheduler"] == "DDIMScheduler"


@pytest.mark.django_db
def test_the_scheduler_cannot_change_once_frozen(reference_models: Path) -> None:
    from django.core.exceptions import ValidationError

    collection = make_token(reference_models, threshold=-1.0, slug="frozen-sched").collection
    Collection.objects.filter(pk=collection.pk).update(config_digest="0x" + "cd" * 32)
    collection.refresh_from_db()
    collection.scheduler = "UniPCMultistepScheduler"
    with pytest.raises(ValidationError) as caught:
        collection.full_clean()
    assert "frozen" in " ".join(caught.value.message_dict["scheduler"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "config", "field", "message"),
    [
        ("nowhere", None, "model_dir", "no model file or folder"),
        ("weights.ckpt", "diffusion", "model_dir", "must be .safetensors"),
        ("weights.safetensors", None, "model_config_dir", "needs a config folder"),
        ("weights.safetensors", "empty", "model_config_dir", "no model_index.json"),
        ("empty", None, "model_dir", "without model_index.json"),
        ("diffusion", "diffusion", "model_config_dir", "only a single-file checkpoint"),
        ("diffusion", None, "scheduler", "not a valid choice"),
    ],
)
def test_it_refuses_an_unusable_model_reference_naming_the_field(
    reference_models: Path,
    tmp_path: Path,
    model: str,
    config: str | None,
    field: str,
    message: str,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    from django.core.exceptions import ValidationError

    settings.MODEL_ROOTS = [reference_models, tmp_path]  # the test's files are allowed
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights.ckpt").write_bytes(b"pickle")
    (tmp_path / "weights.safetensors").write_bytes(b"{}")

    def where(name: str) -> str:
        return str(reference_models / name if name == "diffusion" else tmp_path / name)

    collection = make_token(reference_models, threshold=-1.0, slug="model-ref").collection
    collection.model_dir = where(model)
    collection.model_config_dir = where(config) if config else ""
    if field == "scheduler":
        collection.scheduler = "LMSDiscreteScheduler"  # needs scipy: not offered
    with pytest.raises(ValidationError) as caught:
        collection.full_clean()
    assert message in " ".join(caught.value.message_dict[field]), caught.value.message_dict


def test_the_fingerprint_of_a_single_file_is_its_sha256(tmp_path: Path) -> None:
    from generation.reference_models import model_fingerprint

    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(json.dumps({"weights": list(range(100))}).encode())
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert model_fingerprint(checkpoint) == f"sha256:{digest}"


@pytest.mark.django_db
def test_a_collection_on_a_single_file_checkpoint_renders_what_the_folder_renders(
    reference_models: Path,
    tmp_path: Path,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    from generation.single_file import export_single_file

    settings.MODEL_ROOTS = [reference_models, tmp_path]

    checkpoint = export_single_file(reference_models / "diffusion", tmp_path / "ref.safetensors")
    folder = make_token(reference_models, threshold=-1.0, slug="from-folder")
    single = make_token(
        reference_models,
        threshold=-1.0,
        slug="from-file",
        model_dir=str(checkpoint),
        model_config_dir=str(reference_models / "diffusion"),
    )
    single.collection.full_clean()  # a valid reference
    assert pipeline.run_render(folder.pk) == pipeline.Status.RENDERED
    assert pipeline.run_render(single.pk) == pipeline.Status.RENDERED
    folder.refresh_from_db()
    single.refresh_from_db()
    # the same weights, loaded from the one file: the same pixels, and the provenance names
    # the file by its sha256 (what `sha256sum` and model hubs print)
    assert single.image_sha256 == folder.image_sha256
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert single.render_record["model"]["fingerprint"] == f"sha256:{digest}"
    assert single.render_record["model"]["format"] == "single-file"
    assert generation_config(single.collection)["model"]["format"] == "single-file"
    assert folder.render_record["model"]["format"] == "diffusers"
