"""ONNX Runtime renders: the committed reference-world model exported with ``manage.py
export_onnx``, run through the project's renderer by onnxruntime, compared with torch, and the
export's checks (generation/onnx_runtime.py check_onnx_folder)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from PIL import Image

from generation.errors import ModelReferenceError
from generation.onnx_runtime import (
    COMPONENTS,
    check_onnx_folder,
    file_sha256,
    onnx_fingerprint,
    use_onnx,
)
from generation.reference_models import model_fingerprint
from generation.reference_world.oracle import read_traits
from generation.reference_world.samples import render_captions
from generation.reference_world.world import caption, world_traits
from generation.rendering import Renderer, RenderParams, png_bytes

#: The largest per-pixel difference (0-255) allowed between an ONNX and a torch render of the
#: same seed: docs/onnx.md gives the measured figures (max 1 over 32 renders at 20 steps).
PIXEL_TOLERANCE = 2
SEEDS = [f"onnx:{i}".encode() for i in range(8)]
CAPTIONS = [caption(world_traits(seed)) for seed in SEEDS]


@pytest.fixture(scope="module")
def teacher() -> Path:
    return Path(settings.REFERENCE_WORLD_DIR) / "diffusion"


@pytest.fixture(scope="module")
def exported(teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The teacher exported once for the module by the management command: (folder, stdout)."""
    out = tmp_path_factory.mktemp("onnx") / "teacher-onnx"
    stdout = io.StringIO()
    call_command("export_onnx", model=str(teacher), out=str(out), stdout=stdout)
    return out, stdout.getvalue()


@pytest.fixture(scope="module")
def torch_renderer(teacher: Path) -> Renderer:
    return Renderer(teacher, device="cpu")


@pytest.fixture(scope="module")
def onnx_renderer(teacher: Path, exported: tuple[Path, str]) -> Renderer:
    renderer = Renderer(teacher, device="cpu")
    use_onnx(renderer.pipe, exported[0], "cpu", threads=1)
    return renderer


def _render(
    renderer: Renderer, *, steps: int = 20, scheduler: str = "", size: tuple[int, int] = (64, 64)
) -> list[Image.Image]:
    if scheduler or size != (64, 64):
        # render_captions takes the model's scheduler and the world's size; others go
        # through render_many
        params = RenderParams("", "", steps, 1.0, *size, scheduler)
        requests = [
            (renderer.prompt_embeddings(text, "", 1.0), seed, 0)
            for text, seed in zip(CAPTIONS, SEEDS, strict=True)
        ]
        return renderer.render_many(params, requests)
    return render_captions(renderer, CAPTIONS, lambda i: SEEDS[i], steps=steps, guidance=4.0)


def _max_difference(a: list[Image.Image], b: list[Image.Image]) -> int:
    return max(
        int(np.abs(np.asarray(x, dtype=np.int16) - np.asarray(y, dtype=np.int16)).max())
        for x, y in zip(a, b, strict=True)
    )


def test_it_writes_the_three_graphs_and_a_manifest_that_names_the_source_model(
    teacher: Path, exported: tuple[Path, str]
) -> None:
    out, stdout = exported
    manifest = json.loads((out / "onnx.json").read_text())

    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "onnx.json",
        "text_encoder/model.onnx",
        "unet/model.onnx",
        "vae_decoder/model.onnx",
    ]
    assert manifest["source_fingerprint"] == model_fingerprint(teacher)
    assert manifest["files"] == {rel: file_sha256(out / rel) for rel in COMPONENTS.values()}
    assert manifest["fingerprint"] == onnx_fingerprint(out)
    assert manifest["opset"] == 18
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest["versions"])
    assert manifest["inputs"]["unet"]["sample"] == [
        "batch",
        4,
        "height (multiple of 4)",
        "width (multiple of 4)",
    ]
    assert manifest["fingerprint"] in stdout and manifest["source_fingerprint"] in stdout
    check_onnx_folder(out, model_fingerprint(teacher))  # a fresh export passes its own check
    # the committed export (models/reference-world/diffusion-onnx, which the lever tests and
    # the latency bench use) is this command's output, byte for byte
    committed = json.loads((teacher.parent / "diffusion-onnx" / "onnx.json").read_text())
    assert committed["fingerprint"] == manifest["fingerprint"]


def test_the_command_refuses_a_folder_that_is_not_a_diffusers_pipeline(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()

    with pytest.raises(CommandError, match=r"^--model: .*no model_index\.json"):
        call_command("export_onnx", model=str(tmp_path / "weights"), out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_the_export_carries_no_trace_of_where_it_was_made(exported: tuple[Path, str]) -> None:
    # The exporter notes each node's Python stack trace (this checkout's absolute paths and line
    # numbers); with them, exporting the same model twice gave different bytes.
    checkout = str(Path(__file__).resolve().parent.parent).encode()
    for rel in COMPONENTS.values():
        data = (exported[0] / rel).read_bytes()
        assert checkout not in data and b"stack_trace" not in data, rel


def test_it_renders_what_torch_renders_within_the_tolerance(
    torch_renderer: Renderer, onnx_renderer: Renderer
) -> None:
    torch_images = _render(torch_renderer)
    onnx_images = _render(onnx_renderer)

    assert _max_difference(torch_images, onnx_images) <= PIXEL_TOLERANCE
    same_reading = sum(
        read_traits(a).traits == read_traits(b).traits
        for a, b in zip(torch_images, onnx_images, strict=True)
    )
    assert same_reading >= 7, f"the oracle reads the same traits on {same_reading} of 8"


def test_it_renders_the_same_bytes_from_the_same_seed_twice(onnx_renderer: Renderer) -> None:
    first = [png_bytes(image) for image in _render(onnx_renderer, steps=8)]
    second = [png_bytes(image) for image in _render(onnx_renderer, steps=8)]

    assert first == second


def test_a_scheduler_variant_renders_through_the_same_sessions(
    torch_renderer: Renderer, onnx_renderer: Renderer
) -> None:
    # Renderer.pipeline_for builds type(base)(**base.components, ...): the ONNX networks
    # must come along (the distilled student renders with LCMScheduler this way).
    onnx_images = _render(onnx_renderer, steps=4, scheduler="LCMScheduler")
    torch_images = _render(torch_renderer, steps=4, scheduler="LCMScheduler")

    assert _max_difference(torch_images, onnx_images) <= PIXEL_TOLERANCE


def test_one_export_renders_other_image_sizes(
    torch_renderer: Renderer, onnx_renderer: Renderer
) -> None:
    onnx_images = _render(onnx_renderer, steps=4, size=(96, 48))
    torch_images = _render(torch_renderer, steps=4, size=(96, 48))

    assert onnx_images[0].size == (96, 48)
    assert _max_difference(torch_images, onnx_images) <= PIXEL_TOLERANCE


def test_the_warm_pool_counts_the_onnx_files(
    onnx_renderer: Renderer, exported: tuple[Path, str]
) -> None:
    files = sum((exported[0] / rel).stat().st_size for rel in COMPONENTS.values())
    assert onnx_renderer.memory_bytes() == files


def _copy(exported: tuple[Path, str], tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(exported[0], dest)
    return dest


def test_it_refuses_an_export_missing_its_unet(
    exported: tuple[Path, str], teacher: Path, tmp_path: Path
) -> None:
    folder = _copy(exported, tmp_path)
    (folder / "unet" / "model.onnx").unlink()

    with pytest.raises(ModelReferenceError, match=r"^onnx_dir .*unet/model\.onnx is missing") as e:
        check_onnx_folder(folder, model_fingerprint(teacher))
    assert e.value.field == "onnx_dir"


def test_it_refuses_a_swapped_file(
    exported: tuple[Path, str], teacher: Path, tmp_path: Path
) -> None:
    folder = _copy(exported, tmp_path)
    shutil.copyfile(folder / "vae_decoder" / "model.onnx", folder / "unet" / "model.onnx")

    with pytest.raises(ModelReferenceError, match=r"^onnx_dir .*unet/model\.onnx has sha256:") as e:
        check_onnx_folder(folder, model_fingerprint(teacher))
    assert e.value.field == "onnx_dir"


def test_it_refuses_an_export_of_another_model(
    exported: tuple[Path, str], reference_models: Path
) -> None:
    # The untrained reference pipeline stands for a collection whose model is not the teacher.
    other = model_fingerprint(reference_models / "diffusion")

    with pytest.raises(ModelReferenceError, match=rf"^onnx_dir .*not from .*{other}") as e:
        check_onnx_folder(exported[0], other)
    assert e.value.field == "onnx_dir"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no folder", r"no such folder"),
        ("no onnx.json", r"onnx\.json is missing"),
        ("unlisted graph", r"extra/model\.onnx not listed in onnx\.json"),
        ("unreadable graph", r"an ONNX file cannot be read"),
    ],
)
def test_it_refuses_an_incomplete_or_padded_export(
    exported: tuple[Path, str], tmp_path: Path, damage: str, message: str
) -> None:
    folder = _copy(exported, tmp_path)
    if damage == "no folder":
        shutil.rmtree(folder)
    elif damage == "no onnx.json":
        (folder / "onnx.json").unlink()
    elif damage == "unlisted graph":
        (folder / "extra").mkdir()
        shutil.copyfile(folder / "unet" / "model.onnx", folder / "extra" / "model.onnx")
    else:
        (folder / "extra").mkdir()
        (folder / "extra" / "model.onnx").write_bytes(b"\xff" * 64)

    with pytest.raises(ModelReferenceError, match=rf"^onnx_dir .*{message}") as e:
        check_onnx_folder(folder, None)
    assert e.value.field == "onnx_dir"


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(),
    reason="this onnxruntime has the CUDA provider",
)
def test_it_says_a_cuda_render_needs_onnxruntime_gpu(
    teacher: Path, exported: tuple[Path, str]
) -> None:
    renderer = Renderer(teacher, device="cpu")

    with pytest.raises(ModelReferenceError, match=r"^onnx_dir: .*CUDAExecutionProvider") as e:
        use_onnx(renderer.pipe, exported[0], "cuda")
    assert e.value.field == "onnx_dir"
