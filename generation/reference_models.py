"""Small, deterministic reference models that run the real diffusers and open_clip code paths.

No machine here reaches a model hub, so the project builds its own tiny models the way
diffusers' own tests do, and saves them with the libraries' own save functions. Everything that
loads them (``StableDiffusionPipeline.from_pretrained``, ``open_clip.create_model_and_transforms
("local-dir:...")``) is the same code that loads real weights. The weights are random: the
images are noise-like and the CLIP scores carry no meaning, but every stage runs for real.

Layout written by :func:`build_reference_models`::

    out_dir/diffusion/      diffusers StableDiffusionPipeline folder (safetensors)
    out_dir/clip/           open_clip folder: open_clip_config.json + open_clip_model.safetensors
    out_dir/manifest.json   each model's folder, kind and fingerprint
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt"})

# Image side of the reference pipeline: UNet sample_size 32 times the VAE's scale factor 2.
REFERENCE_IMAGE_SIZE = 64
CONTEXT_LENGTH = 77
# CLIP's BPE vocabulary: 256 byte tokens, 256 byte+"</w>" tokens, 48894 merges, 2 specials.
VOCAB_SIZE = 49408
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"

CLIP_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {
        "context_length": CONTEXT_LENGTH,
        "vocab_size": VOCAB_SIZE,
        "width": 32,
        "heads": 2,
        "layers": 2,
    },
}

# Each component gets its own torch seed offset so that changing one leaves the others'
# weights (and fingerprints) alone.
_SEED_OFFSETS = {"unet": 1, "vae": 2, "text_encoder": 3, "clip": 4}

_CHUNK = 1 << 20

logger = logging.getLogger(__name__)


def model_fingerprint(path: Path) -> str:
    """Return ``"sha256:<hex>"`` identifying the weights at ``path``.

    For a single file: the sha256 of its bytes, so it equals ``sha256sum`` and the digests
    that model hubs publish for checkpoint files.

    For a folder: one sha256 over every weights file below it (suffix ``.safetensors``,
    ``.bin``, ``.pt``, ``.pth`` or ``.ckpt``), taken in sorted order of their POSIX paths
    relative to the folder; for each file the hash is fed the relative path (UTF-8) and then
    the file's bytes. For a folder whose weights are all ``*.safetensors``, in shell terms::

        cd FOLDER && find . -type f -name '*.safetensors' | cut -c3- | LC_ALL=C sort |
            while read -r f; do printf %s "$f"; cat "$f"; done | sha256sum

    Configs, tokenizer files and manifests are not part of it: the fingerprint says which
    weights made an image.
    """
    path = Path(path)
    if path.is_file():
        digest = hashlib.sha256()
        _feed_file(digest, path)
        return "sha256:" + digest.hexdigest()
    if not path.is_dir():
        raise FileNotFoundError(f"no model file or folder at {path}")
    files = sorted(
        (p.relative_to(path).as_posix(), p)
        for p in path.rglob("*")
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    )
    if not files:
        raise FileNotFoundError(
            f"no weights files ({', '.join(sorted(WEIGHT_SUFFIXES))}) under {path}"
        )
    return files_fingerprint(path, [file for _, file in files])


def files_fingerprint(root: Path, files: Iterable[Path]) -> str:
    """``"sha256:<hex>"`` over ``files`` (all under ``root``) as :func:`model_fingerprint`
    takes a folder's weights: sorted by POSIX path relative to ``root``, each fed as that path
    (UTF-8) and then its bytes. Other weight formats (ONNX exports) choose their own files."""
    root = Path(root)
    digest = hashlib.sha256()
    for rel, file in sorted((Path(f).relative_to(root).as_posix(), Path(f)) for f in files):
        digest.update(rel.encode("utf-8"))
        _feed_file(digest, file)
    return "sha256:" + digest.hexdigest()


def _feed_file(digest: hashlib._Hash, file: Path) -> None:
    with file.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)


def build_reference_models(out_dir: Path, *, seed: int = 0) -> dict[str, str]:
    """Build the reference diffusion pipeline and CLIP model under ``out_dir``.

    Deterministic: the same ``seed`` and library versions give byte-identical weights files,
    hence the same fingerprints. Everything is built in a staging folder beside the destination
    and moved into place; the manifest is removed first and written last, so a manifest on disk
    always describes complete folders. Returns ``{"diffusion": fp, "clip": fp}``.
    """
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet_progress_bars()
    # One builder at a time per folder (a test session and `run_stack` may start together);
    # the lock is released when the file closes.
    with (
        (out_dir / ".build.lock").open("w") as lock,
        tempfile.TemporaryDirectory(prefix=".build-", dir=out_dir) as tmp,
    ):
        fcntl.flock(lock, fcntl.LOCK_EX)
        staging = Path(tmp)
        # Weights are initialised on the CPU in float32 whatever machine builds them.
        with torch.device("cpu"):
            vocab_dir = staging / "bpe"
            tokenizer = _clip_tokenizer(vocab_dir)
            _build_diffusion(staging / "diffusion", tokenizer, seed)
            _build_clip(staging / "clip", tokenizer, seed)
            for dest in (staging / "diffusion" / "tokenizer", staging / "clip"):
                _copy_vocab_files(vocab_dir, dest)
        fingerprints = {name: model_fingerprint(staging / name) for name in ("diffusion", "clip")}
        manifest = {
            "format": MANIFEST_FORMAT,
            "seed": seed,
            "models": {
                "diffusion": {
                    "path": "diffusion",
                    "kind": "diffusers.StableDiffusionPipeline",
                    "fingerprint": fingerprints["diffusion"],
                    "image_size": REFERENCE_IMAGE_SIZE,
                },
                "clip": {
                    "path": "clip",
                    "kind": "open_clip.CLIP",
                    "fingerprint": fingerprints["clip"],
                    "load": "open_clip.create_model_and_transforms('local-dir:<path>')",
                },
            },
            "versions": _library_versions(),
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _make_readable(staging)
        (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
        for name in ("diffusion", "clip"):
            dest = out_dir / name
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(staging / name, dest)
        # The manifest goes last: its presence means both folders are complete.
        os.replace(staging / MANIFEST_NAME, out_dir / MANIFEST_NAME)
    return fingerprints


def _make_readable(root: Path) -> None:
    # Some savers write weights with mode 0600; render workers may run as another user.
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def read_manifest(out_dir: Path) -> dict | None:
    """Return the manifest written by :func:`build_reference_models`, or None if absent."""
    try:
        return json.loads((Path(out_dir) / MANIFEST_NAME).read_text())
    except FileNotFoundError:
        return None


def manifest_matches(out_dir: Path, *, seed: int | None = None) -> bool:
    """True when the manifest exists (for ``seed``, if given) and every model on disk still
    has the fingerprint the manifest records."""
    manifest = read_manifest(out_dir)
    if manifest is None or manifest.get("format") != MANIFEST_FORMAT:
        return False
    if seed is not None and manifest.get("seed") != seed:
        return False
    for entry in manifest["models"].values():
        try:
            if model_fingerprint(Path(out_dir) / entry["path"]) != entry["fingerprint"]:
                return False
        except FileNotFoundError:
            return False
    return True


def quiet_progress_bars() -> None:
    """Turn off the tqdm bars diffusers and transformers draw while loading and saving;
    in workers and logs they are noise. Process-wide, like the libraries' own switches."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _library_versions() -> dict[str, str]:
    names = ("torch", "diffusers", "transformers", "open_clip_torch", "safetensors")
    return {name: metadata.version(name) for name in names}


def _bytes_to_unicode() -> dict[int, str]:
    # Same table as open_clip.tokenizer.bytes_to_unicode (and GPT-2's): printable bytes map to
    # themselves, the rest to code points from 256 up.
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _open_clip_bpe_path() -> Path:
    from open_clip.tokenizer import default_bpe

    return Path(default_bpe())


def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary and merge list, derived from the BPE file open_clip ships exactly as
    ``open_clip.tokenizer.SimpleTokenizer`` derives its encoder, so the ids match open_clip's.
    The two special tokens take the last ids (49406, 49407) under the names transformers uses.
    """
    with gzip.open(_open_clip_bpe_path()) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(_bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    vocab += ["".join(merge.split()) for merge in merges]
    vocab += [BOS_TOKEN, EOS_TOKEN]
    assert len(vocab) == VOCAB_SIZE, len(vocab)
    return {token: i for i, token in enumerate(vocab)}, merges


def _clip_tokenizer(scratch: Path):
    """A transformers ``CLIPTokenizer`` loaded from vocab.json/merges.txt in the format of
    OpenAI's CLIP repositories on the hub (merges.txt starts with a version line)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    scratch.mkdir(parents=True)
    (scratch / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (scratch / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    return CLIPTokenizer.from_pretrained(
        scratch,
        model_max_length=CONTEXT_LENGTH,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
    )


def _build_diffusion(dest: Path, tokenizer, seed: int) -> None:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    # The shapes follow diffusers' tests (tests/pipelines/stable_diffusion), with the full CLIP
    # vocabulary so real prompts tokenize to real ids.
    torch.manual_seed(seed * 16 + _SEED_OFFSETS["unet"])
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=REFERENCE_IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    torch.manual_seed(seed * 16 + _SEED_OFFSETS["vae"])
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=REFERENCE_IMAGE_SIZE,
    )
    torch.manual_seed(seed * 16 + _SEED_OFFSETS["text_encoder"])
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=CONTEXT_LENGTH,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
            projection_dim=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    # Stable Diffusion 1.x's scheduler settings; DDIM with eta 0 adds no noise after the first
    # latents, so the generator seed alone decides the image.
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    save_pipeline(dest, vae, text_encoder, tokenizer, unet, scheduler)


def load_local_pipeline(model_dir: Path, **kwargs: Any) -> Any:
    """A diffusers ``StableDiffusionPipeline`` folder loaded from local files only, without a
    safety checker, with real tensors. The renderer, the trainers (distillation, LoRA) and the
    ONNX export all load a model this way; ``kwargs`` go to ``from_pretrained`` (a dtype).

    No safety checker: the CLIP gate is this project's filter, and a checkpoint's own checker
    would blank images silently and is not part of the provenance record. Real tensors
    (``low_cpu_mem_usage=False``): with ``accelerate`` installed (peft, for LoRA, brings it)
    diffusers would otherwise build the model on the meta device first.
    """
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(
        model_dir,
        local_files_only=True,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        low_cpu_mem_usage=False,
        **kwargs,
    )


def save_pipeline(
    dest: Path, vae: Any, text_encoder: Any, tokenizer: Any, unet: Any, scheduler: Any
) -> None:
    """Save the components as a ``StableDiffusionPipeline`` folder (safetensors, no safety
    checker), the layout the renderer loads."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(dest, safe_serialization=True)


def _build_clip(dest: Path, tokenizer: Any, seed: int) -> None:
    import torch

    torch.manual_seed(seed * 16 + _SEED_OFFSETS["clip"])
    model = new_clip_model(CLIP_MODEL_CFG, dest)
    save_clip_model(model, CLIP_MODEL_CFG, dest, tokenizer)


def new_clip_model(model_cfg: dict[str, Any], scratch: Path) -> Any:
    """A freshly initialised open_clip model of ``model_cfg``, drawn from torch's global RNG.

    Built through open_clip's own factory from a local config (written to ``scratch`` and
    removed again), the same route that loads the saved model.
    """
    import open_clip

    scratch.mkdir(parents=True, exist_ok=True)
    config_path = scratch / "open_clip_config.json"
    config_path.write_text(json.dumps({"model_cfg": model_cfg}))
    factory_log = logging.getLogger()
    level = factory_log.level
    factory_log.setLevel(logging.ERROR)  # "no pretrained weights loaded" is the point here
    try:
        return open_clip.create_model("local-dir:" + str(scratch), device="cpu")
    finally:
        factory_log.setLevel(level)
        config_path.unlink()


def save_clip_model(
    model: Any, model_cfg: dict[str, Any], dest: Path, tokenizer: Any = None
) -> None:
    """Save an open_clip model in the layout ``ClipScorer`` loads (``local-dir:dest``).

    save_for_hf writes open_clip_config.json (model + preprocess config), the weights, and the
    tokenizer files. open_clip itself tokenizes with SimpleTokenizer (no hf_tokenizer_name in
    the config); the transformers files are there for other readers and give the same ids.
    """
    from open_clip.push_to_hf_hub import save_for_hf

    with tempfile.TemporaryDirectory(prefix=".clip-vocab-") as tmp:
        vocab_dir = Path(tmp) / "bpe"
        if tokenizer is None:
            tokenizer = _clip_tokenizer(vocab_dir)
        save_for_hf(model, tokenizer, dict(model_cfg), dest, safe_serialization=True)
        if vocab_dir.is_dir():
            _copy_vocab_files(vocab_dir, dest)
    _make_readable(dest)


def _copy_vocab_files(vocab_dir: Path, dest: Path) -> None:
    # transformers 5 saves only tokenizer.json; vocab.json and merges.txt beside it keep the
    # folder loadable by transformers 4 and readable by other BPE implementations, as in the
    # hub's Stable Diffusion and CLIP repositories.
    for name in ("vocab.json", "merges.txt"):
        if not (dest / name).exists():
            shutil.copyfile(vocab_dir / name, dest / name)
