"""The reference models: deterministic builds, and the real diffusers/open_clip paths load them.

No Django needed; the models are built once per module into a temporary folder.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from generation.clip_gate import ClipScorer, check_image, get_scorer
from generation.reference_models import (
    build_reference_models,
    manifest_matches,
    model_fingerprint,
    read_manifest,
)
from generation.render_seed import torch_seed_for
from generation.rendering import Renderer, RenderParams, get_renderer, png_bytes

ALICE_SEED = bytes.fromhex("a1" * 32)
BOB_SEED = bytes.fromhex("b0" * 32)
PARAMS = RenderParams(
    prompt="a red fox in a birch forest, oil painting",
    negative_prompt="blurry, text",
    steps=2,
    guidance=7.5,
    width=64,
    height=64,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    out = tmp_path_factory.mktemp("reference-models")
    return out, build_reference_models(out, seed=0)


@pytest.fixture(scope="module")
def renderer(models: tuple[Path, dict[str, str]]) -> Renderer:
    return get_renderer(models[0] / "diffusion", device="cpu")


@pytest.fixture(scope="module")
def scorer(models: tuple[Path, dict[str, str]]) -> ClipScorer:
    return get_scorer(models[0] / "clip", device="cpu")


@pytest.fixture(scope="module")
def fox(renderer: Renderer) -> Image.Image:
    return renderer.render(PARAMS, ALICE_SEED, 0)


def test_it_builds_the_same_weights_twice_from_the_same_seed(
    models: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    first_dir, first = models
    again = build_reference_models(tmp_path, seed=0)
    assert again == first
    assert (tmp_path / "manifest.json").read_bytes() == (first_dir / "manifest.json").read_bytes()


def test_it_builds_different_weights_from_a_different_seed(
    models: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    other = build_reference_models(tmp_path, seed=1)
    assert other["diffusion"] != models[1]["diffusion"]
    assert other["clip"] != models[1]["clip"]
    assert not manifest_matches(tmp_path, seed=0)
    assert manifest_matches(tmp_path, seed=1)


def test_it_records_the_fingerprints_in_the_manifest(models: tuple[Path, dict[str, str]]) -> None:
    out, fingerprints = models
    manifest = read_manifest(out)
    assert manifest is not None
    assert {name: m["fingerprint"] for name, m in manifest["models"].items()} == fingerprints
    assert manifest_matches(out, seed=0)


def test_it_notices_changed_weights(models: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(models[0], copy)
    weights = copy / "clip" / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    assert not manifest_matches(copy)


def test_it_fingerprints_a_folder_as_documented(models: tuple[Path, dict[str, str]]) -> None:
    root = models[0] / "diffusion"
    digest = hashlib.sha256()
    for rel in sorted(p.relative_to(root).as_posix() for p in root.rglob("*.safetensors")):
        digest.update(rel.encode())
        digest.update((root / rel).read_bytes())
    assert model_fingerprint(root) == models[1]["diffusion"] == f"sha256:{digest.hexdigest()}"


def test_it_fingerprints_a_single_file_as_its_sha256(models: tuple[Path, dict[str, str]]) -> None:
    weights = models[0] / "clip" / "open_clip_model.safetensors"
    expected = "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    assert model_fingerprint(weights) == expected


@pytest.mark.parametrize(
    ("seed", "attempt", "expected"),
    [
        (bytes(32), 0, hashlib.sha256(bytes(36)).digest()[:8]),
        (ALICE_SEED, 7, hashlib.sha256(ALICE_SEED + b"\0\0\0\x07").digest()[:8]),
        (BOB_SEED, 2**32 - 1, hashlib.sha256(BOB_SEED + b"\xff" * 4).digest()[:8]),
    ],
)
def test_it_derives_the_torch_seed_as_documented(
    seed: bytes, attempt: int, expected: bytes
) -> None:
    assert torch_seed_for(seed, attempt) == int.from_bytes(expected, "big") & (2**63 - 1)


def test_it_loads_the_pipeline_once_per_process(
    renderer: Renderer, models: tuple[Path, dict[str, str]]
) -> None:
    assert get_renderer(models[0] / "diffusion", device="cpu") is renderer
    assert renderer.fingerprint == models[1]["diffusion"]
    assert renderer.scheduler_name == "DDIMScheduler"


def test_it_renders_a_64px_image(fox: Image.Image) -> None:
    assert fox.size == (64, 64)
    assert fox.mode == "RGB"
    # Real output, not a blank or a flat color.
    assert len(fox.getcolors(maxcolors=64 * 64) or []) > 100


def test_it_renders_the_same_png_for_the_same_seed_and_attempt(
    renderer: Renderer, fox: Image.Image
) -> None:
    assert png_bytes(renderer.render(PARAMS, ALICE_SEED, 0)) == png_bytes(fox)


def test_it_renders_a_different_image_for_another_attempt(
    renderer: Renderer, fox: Image.Image
) -> None:
    assert png_bytes(renderer.render(PARAMS, ALICE_SEED, 1)) != png_bytes(fox)


def test_it_writes_pngs_without_metadata(fox: Image.Image) -> None:
    data = png_bytes(fox)
    for chunk in (b"tIME", b"tEXt", b"zTXt", b"iTXt", b"iCCP"):
        assert chunk not in data
    assert Image.open(io.BytesIO(data)).tobytes() == fox.tobytes()


@pytest.mark.parametrize(
    "prompt",
    [
        "a red fox in a birch forest, oil painting",
        "Pixel-art CAT!!  wearing   SUNGLASSES",
        "it's 1999 — café at 3:45pm, ünïcödé 日本語",
        "",
    ],
)
def test_it_tokenizes_like_open_clip(renderer: Renderer, scorer: ClipScorer, prompt: str) -> None:
    ids = renderer.pipe.tokenizer(prompt).input_ids
    open_clip_ids = scorer.tokenizer([prompt])[0].tolist()
    assert ids == open_clip_ids[: len(ids)]
    assert ids[0] == 49406 and ids[-1] == 49407


def test_it_scores_an_image_against_texts(scorer: ClipScorer, fox: Image.Image) -> None:
    scores = scorer.score(fox, ["oil painting", "a fox", "a photo of a cat"])
    assert len(scores) == 3
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert scores == scorer.score(fox, ["oil painting", "a fox", "a photo of a cat"])
    assert get_scorer(scorer.clip_dir, device="cpu") is scorer


def test_it_fails_the_gate_below_the_threshold_with_a_reason(
    scorer: ClipScorer, fox: Image.Image
) -> None:
    result = check_image(scorer, fox, "oil painting", 1.0)
    assert not result.passed
    assert result.thresholds == {"style": 1.0}
    [reason] = result.reasons
    assert f"{result.scores['style']:.6f}" in reason
    assert "1.000000" in reason


def test_it_passes_the_gate_at_or_above_the_threshold(scorer: ClipScorer, fox: Image.Image) -> None:
    result = check_image(scorer, fox, "oil painting", -1.0)
    assert result.passed
    assert result.reasons == []


def test_it_renders_the_same_image_from_cached_prompt_embeddings(
    models: tuple[Path, dict[str, str]],
) -> None:
    import torch

    renderer = Renderer(models[0] / "diffusion", device="cpu")
    params = RenderParams("a fox {cached}", "blurry", 2, 7.5, 64, 64)
    first = png_bytes(renderer.render(params, b"seed", 0))
    assert renderer.prompt_encodes == 1
    # the second render of the same prompt encodes nothing and gives the same image
    assert png_bytes(renderer.render(params, b"seed", 0)) == first
    assert renderer.prompt_encodes == 1
    # and a fresh renderer, encoding the prompt itself, agrees
    fresh = Renderer(models[0] / "diffusion", device="cpu")
    fresh._prompt_cache.clear()
    image = fresh.pipe(
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        num_inference_steps=params.steps,
        guidance_scale=params.guidance,
        width=64,
        height=64,
        generator=torch.Generator().manual_seed(torch_seed_for(b"seed", 0)),
    ).images[0]
    assert png_bytes(image) == first


def test_it_renders_in_the_precision_asked_for_and_names_its_attention(
    models: tuple[Path, dict[str, str]],
) -> None:
    bf16 = Renderer(models[0] / "diffusion", device="cpu", dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16
    assert bf16.attention == "AttnProcessor2_0"  # torch's scaled_dot_product_attention
    image = bf16.render(RenderParams("a fox", "", 1, 7.5, 64, 64), b"seed", 0)
    assert image.size == (64, 64)
    assert not bf16.compiled  # torch.compile is used on CUDA only
    with pytest.raises(ValueError, match="RENDER_DTYPE='half'"):
        Renderer(models[0] / "diffusion", device="cpu", dtype="half")
