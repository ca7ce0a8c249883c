"""Single-file checkpoints: the reference pipeline exported to the original SD 1.x layout and
loaded back through diffusers' own ``from_single_file``, offline."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import call_command
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from generation.errors import (
    CheckpointNotFound,
    IncompleteCheckpoint,
    NotADiffusersFolder,
    UnreadableCheckpoint,
    UnsafeCheckpointFormat,
)
from generation.reference_models import model_fingerprint, quiet_progress_bars
from generation.single_file import export_single_file, load_single_file_pipeline

COMPONENTS = ("unet", "vae", "text_encoder")
NO_SAFETY = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


@pytest.fixture(scope="module")
def diffusion_dir(reference_models: Path) -> Path:
    return reference_models / "diffusion"


@pytest.fixture(scope="module")
def exported(diffusion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_single_file(diffusion_dir, tmp_path_factory.mktemp("single") / "ref.safetensors")


@pytest.fixture(scope="module")
def configs_only(diffusion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference folder without its weights: whatever loads from it must take every
    tensor from the single file."""
    dest = tmp_path_factory.mktemp("configs") / "diffusion"
    shutil.copytree(diffusion_dir, dest, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return dest


@pytest.fixture(scope="module")
def folder_pipe(diffusion_dir: Path):
    from diffusers import StableDiffusionPipeline

    quiet_progress_bars()
    return StableDiffusionPipeline.from_pretrained(
        diffusion_dir, local_files_only=True, low_cpu_mem_usage=False, **NO_SAFETY
    )


@pytest.fixture(scope="module")
def single_file_pipe(exported: Path, diffusion_dir: Path):
    from diffusers import StableDiffusionPipeline

    quiet_progress_bars()
    return StableDiffusionPipeline.from_single_file(
        str(exported), config=str(diffusion_dir), local_files_only=True, **NO_SAFETY
    )


def assert_same_weights(pipe, reference) -> None:
    for name in COMPONENTS:
        got, want = getattr(pipe, name).state_dict(), getattr(reference, name).state_dict()
        assert got.keys() == want.keys(), name
        for key, tensor in want.items():
            assert got[key].dtype == tensor.dtype, f"{name}.{key}"
            assert torch.equal(got[key], tensor), f"{name}.{key}"


def render(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(20240611)
    result = pipe(
        "a lighthouse at dusk, oil painting",
        negative_prompt="blurry",
        num_inference_steps=2,
        guidance_scale=7.5,
        height=64,
        width=64,
        generator=generator,
        output_type="np",
    )
    return result.images


def test_it_loads_every_tensor_of_the_folder_from_the_file(single_file_pipe, folder_pipe):
    # Given the reference pipeline exported to one file
    # When diffusers loads the file with the folder as its config
    # Then every component holds exactly the folder's tensors
    assert_same_weights(single_file_pipe, folder_pipe)
    assert type(single_file_pipe.scheduler) is type(folder_pipe.scheduler)
    assert single_file_pipe.safety_checker is None


def test_it_takes_the_weights_from_the_file_not_the_config_folder(
    exported: Path, configs_only: Path, folder_pipe
):
    quiet_progress_bars()
    pipe = load_single_file_pipeline(exported, configs_only)
    assert_same_weights(pipe, folder_pipe)


def test_it_renders_the_same_pixels_as_the_folder(single_file_pipe, folder_pipe):
    from_file, from_folder = render(single_file_pipe), render(folder_pipe)
    assert from_file.shape == (1, 64, 64, 3)
    assert from_file.std() > 0  # an image, not a blank
    assert np.array_equal(from_file, from_folder)
    pixels = [(images * 255).round().astype(np.uint8) for images in (from_file, from_folder)]
    assert np.array_equal(*pixels)


def test_it_exports_byte_identical_files(exported: Path, diffusion_dir: Path, tmp_path: Path):
    again = export_single_file(diffusion_dir, tmp_path / "nested" / "again.safetensors")
    assert again.read_bytes() == exported.read_bytes()
    digest = hashlib.sha256(exported.read_bytes()).hexdigest()
    assert model_fingerprint(again) == f"sha256:{digest}"
    assert again.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in again.parent.iterdir()] == ["again.safetensors"]  # no temp file


def test_it_writes_the_original_sd1_layout(exported: Path):
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES, infer_diffusers_model_type

    with safe_open(exported, "pt") as f:
        metadata = f.metadata()
        shapes = {key: f.get_slice(key).get_shape() for key in f.keys()}  # noqa: SIM118
    assert metadata == {"format": "pt"}
    prefixes = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.")
    assert all(key.startswith(prefixes) for key in shapes)
    assert all(any(key.startswith(p) for key in shapes) for p in prefixes)
    # diffusers finds the text encoder by this key, and calls the file SD 1.x
    assert CHECKPOINT_KEY_NAMES["clip"] in shapes
    assert infer_diffusers_model_type(load_file(exported)) == "v1"
    # LDM's VAE attention projects with 1x1 convs
    for proj in ("q", "k", "v", "proj_out"):
        assert len(shapes[f"first_stage_model.decoder.mid.attn_1.{proj}.weight"]) == 4
    assert "model.diffusion_model.input_blocks.0.0.weight" in shapes
    assert "model.diffusion_model.middle_block.1.proj_in.weight" in shapes


def test_it_loads_without_touching_the_network(exported: Path, configs_only: Path):
    # A fresh interpreter with an audit hook that fails any socket use: a hub lookup anywhere
    # in from_single_file would end the load with an error.
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path

        NETWORK_EVENTS = {
            "socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto",
            "urllib.Request",
        }

        def refuse_network(event, args):
            if event in NETWORK_EVENTS:
                raise RuntimeError(f"network access: {event} {args!r}")

        sys.addaudithook(refuse_network)
        from generation.single_file import load_single_file_pipeline

        pipe = load_single_file_pipeline(Path(sys.argv[1]), Path(sys.argv[2]))
        print(type(pipe).__name__)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(exported), str(configs_only)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "StableDiffusionPipeline"


def _broken_copy(exported: Path, dest: Path, drop: str) -> Path:
    tensors = load_file(exported)
    save_file({k: v for k, v in tensors.items() if not k.startswith(drop)}, dest, {"format": "pt"})
    return dest


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("missing file", CheckpointNotFound),
        ("pickled ckpt", UnsafeCheckpointFormat),
        ("pickled ckpt, missing", UnsafeCheckpointFormat),
        ("config folder without model_index.json", NotADiffusersFolder),
        ("config given as a hub-style name", NotADiffusersFolder),
        ("not safetensors inside", UnreadableCheckpoint),
        ("no text encoder", IncompleteCheckpoint),
        ("no unet", IncompleteCheckpoint),
        ("one unet tensor short", IncompleteCheckpoint),
    ],
)
def test_it_refuses_with_an_error_naming_the_path(
    case: str, error: type[Exception], exported: Path, configs_only: Path, tmp_path: Path
):
    checkpoint, config_dir = exported, configs_only
    culprit: Path
    if case == "missing file":
        checkpoint = culprit = tmp_path / "absent.safetensors"
    elif case.startswith("pickled ckpt"):
        checkpoint = culprit = tmp_path / "model.ckpt"
        if case == "pickled ckpt":
            checkpoint.write_bytes(b"never unpickled")
    elif case == "config folder without model_index.json":
        config_dir = culprit = tmp_path / "configs"
        shutil.copytree(configs_only, config_dir)
        (config_dir / "model_index.json").unlink()
    elif case == "config given as a hub-style name":
        # diffusers would take this for a repo id and go looking on the hub
        config_dir = culprit = Path("stable-diffusion-v1-5/stable-diffusion-v1-5")
    elif case == "not safetensors inside":
        checkpoint = culprit = tmp_path / "renamed.safetensors"
        checkpoint.write_bytes(b"PK\x03\x04 a zip, not safetensors")
    else:
        drop = {
            "no text encoder": "cond_stage_model.",
            "no unet": "model.diffusion_model.",
            "one unet tensor short": "model.diffusion_model.out.2.weight",
        }[case]
        checkpoint = culprit = _broken_copy(exported, tmp_path / "broken.safetensors", drop)
    quiet_progress_bars()
    with pytest.raises(error, match=re.escape(str(culprit))):
        load_single_file_pipeline(checkpoint, config_dir)


def test_it_refuses_to_export_what_is_not_a_pipeline_folder(tmp_path: Path):
    with pytest.raises(NotADiffusersFolder, match=re.escape(str(tmp_path))):
        export_single_file(tmp_path, tmp_path / "out.safetensors")


def test_it_refuses_to_export_to_a_pickle_name(diffusion_dir: Path, tmp_path: Path):
    with pytest.raises(UnsafeCheckpointFormat, match=re.escape(str(tmp_path / "out.ckpt"))):
        export_single_file(diffusion_dir, tmp_path / "out.ckpt")
    assert not (tmp_path / "out.ckpt").exists()


def test_it_refuses_to_export_pickled_component_weights(diffusion_dir: Path, tmp_path: Path):
    folder = tmp_path / "diffusion"
    shutil.copytree(diffusion_dir, folder)
    unet = folder / "unet"
    (unet / "diffusion_pytorch_model.safetensors").rename(unet / "diffusion_pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointFormat, match=re.escape(str(unet))):
        export_single_file(folder, tmp_path / "out.safetensors")


def test_it_refuses_to_export_a_pipeline_that_is_not_sd1(diffusion_dir: Path, tmp_path: Path):
    from generation.errors import UnsupportedModel

    folder = tmp_path / "diffusion"
    shutil.copytree(diffusion_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder"] = ["transformers", "CLIPTextModelWithProjection"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UnsupportedModel, match="CLIPTextModel"):
        export_single_file(folder, tmp_path / "out.safetensors")


def test_the_command_prints_the_path_and_sha256(exported: Path, diffusion_dir: Path, tmp_path):
    out = io.StringIO()
    target = tmp_path / "cmd.safetensors"
    call_command("export_single_file", str(diffusion_dir), str(target), stdout=out)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert out.getvalue().split() == [str(target), f"sha256:{digest}"]
    assert target.read_bytes() == exported.read_bytes()
