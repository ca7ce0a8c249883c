"""Run a Stable Diffusion pipeline's text encoder, UNet and VAE decoder with onnxruntime.

A collection may name an ONNX export of its model (``onnx_dir``, written by ``manage.py
export_onnx``; generation/onnx_export.py). :func:`use_onnx` swaps a loaded diffusers
``StableDiffusionPipeline``'s three networks for onnxruntime sessions behind small
``torch.nn.Module`` wrappers that answer the calls diffusers makes (``encode_prompt``, the UNet
in the denoising loop, ``vae.decode``) with the tensors it expects. Tokenizer, scheduler and
the rest of the pipeline stay diffusers' own, so the noise, the schedule and the image
post-processing are the same code as a torch render; only the three networks' arithmetic is
onnxruntime's.

The export is checked like weights: :func:`check_onnx_folder` refuses a folder whose files are
missing or changed since the export, or that was exported from another model, and
:func:`onnx_fingerprint` is the sha256 the provenance records.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from generation.errors import ModelReferenceError
from generation.reference_models import files_fingerprint

FIELD = "onnx_dir"
MANIFEST_NAME = "onnx.json"
MANIFEST_FORMAT = 1
#: The three graphs of an export, by the pipeline component each replaces ("vae_decoder"
#: replaces only the VAE's decoder).
COMPONENTS = {
    "text_encoder": "text_encoder/model.onnx",
    "unet": "unet/model.onnx",
    "vae_decoder": "vae_decoder/model.onnx",
}

_CHUNK = 1 << 20


def onnx_weight_files(folder: Path) -> list[Path]:
    """Every ``.onnx`` file under ``folder`` and every external-data file one of them names
    (large exports keep their weights beside the graph), sorted."""
    graphs = sorted(p for p in Path(folder).rglob("*.onnx") if p.is_file())
    files = set(graphs)
    for graph in graphs:
        files.update(external_files(graph))
    return sorted(files)


def external_files(graph: Path) -> set[Path]:
    """The external-data files the ONNX file ``graph`` names (read without loading them)."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(graph), load_external_data=False)
    return {
        graph.parent / {e.key: e.value for e in tensor.external_data}["location"]
        for tensor in model.graph.initializer
        if uses_external_data(tensor)
    }


def onnx_fingerprint(folder: Path) -> str:
    """``"sha256:<hex>"`` of an ONNX export: the ``.onnx`` files and their external-data files,
    fed as :func:`generation.reference_models.model_fingerprint` feeds a folder's weights (each
    file's POSIX path relative to ``folder``, then its bytes, in sorted path order). For an
    export whose weights sit inside the graphs, in shell terms::

        cd FOLDER && find . -type f -name '*.onnx' | cut -c3- | LC_ALL=C sort |
            while read -r f; do printf %s "$f"; cat "$f"; done | sha256sum

    onnx.json is not part of it: like a diffusers folder's configs, it describes the weights.
    """
    folder = Path(folder)
    files = onnx_weight_files(folder)
    if not files:
        raise FileNotFoundError(f"no .onnx files under {folder}")
    return files_fingerprint(folder, files)


def file_sha256(path: Path) -> str:
    """``"sha256:<hex>"`` of one file's bytes (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def read_onnx_manifest(folder: Path) -> dict[str, Any]:
    """The export's onnx.json; ``ModelReferenceError("onnx_dir", …)`` if absent or unreadable."""
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise _refuse(
            folder, f"{MANIFEST_NAME} is missing: not an export of manage.py export_onnx"
        ) from None
    except (OSError, ValueError) as exc:
        raise _refuse(folder, f"{MANIFEST_NAME} cannot be read ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise _refuse(folder, f"{MANIFEST_NAME} is not format {MANIFEST_FORMAT}")
    return manifest


def check_onnx_folder(folder: Path, base_fingerprint: str | None) -> None:
    """Raise ``ModelReferenceError("onnx_dir", …)`` unless ``folder`` is a complete, unchanged
    ONNX export of the model whose fingerprint is ``base_fingerprint`` (None: of any model).

    Refused: no folder; any of the three graphs missing (named); onnx.json missing or naming
    another source model; a file whose sha256 differs from onnx.json's record, or an ONNX file
    onnx.json does not list. Reads every file once (a few seconds for Stable Diffusion 1.5).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise _refuse(folder, "no such folder (write an export with manage.py export_onnx)")
    for rel in COMPONENTS.values():
        if not (folder / rel).is_file():
            raise _refuse(
                folder,
                f"{rel} is missing (an export holds {', '.join(COMPONENTS.values())}; "
                "write one with manage.py export_onnx)",
            )
    manifest = read_onnx_manifest(folder)
    source = manifest.get("source_fingerprint")
    if base_fingerprint is not None and source != base_fingerprint:
        raise _refuse(
            folder,
            f"exported from the model {source}, not from this collection's model "
            f"{base_fingerprint}: export this model with manage.py export_onnx",
        )
    recorded: dict[str, str] = manifest.get("files") or {}
    for rel, expected in sorted(recorded.items()):
        path = folder / rel
        if not path.is_file():
            raise _refuse(folder, f"{rel} is missing (onnx.json lists it)")
        actual = file_sha256(path)
        if actual != expected:
            raise _refuse(
                folder,
                f"{rel} has {actual}, but onnx.json records {expected}: the file changed "
                "after the export",
            )
    from google.protobuf.message import DecodeError  # onnx's parser, on a damaged file

    try:
        on_disk = {p.relative_to(folder).as_posix() for p in onnx_weight_files(folder)}
    except (OSError, DecodeError) as exc:
        raise _refuse(folder, f"an ONNX file cannot be read ({exc})") from exc
    unlisted = sorted(on_disk - set(recorded))
    if unlisted:
        raise _refuse(folder, f"{', '.join(unlisted)} not listed in {MANIFEST_NAME}")


def _refuse(folder: Path, message: str) -> ModelReferenceError:
    return ModelReferenceError(FIELD, f"{FIELD} {folder}: {message}")


# --- the sessions and the wrappers diffusers calls -------------------------------------------


def providers_for(device: str) -> list[str]:
    """onnxruntime providers for a torch device string: CPU, or CUDA (with the CPU behind it
    for the few operators CUDA lacks) when ``device`` is ``cuda…`` and this onnxruntime has it."""
    import onnxruntime

    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise ModelReferenceError(
            FIELD,
            f"{FIELD}: rendering on {device} needs onnxruntime's CUDAExecutionProvider, which "
            f"this onnxruntime lacks (it has {', '.join(available)}): install onnxruntime-gpu "
            "in place of onnxruntime, or render on the CPU",
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def session(path: Path, device: str, threads: int) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path`` set up to give the same bytes every run:
    ``threads`` intra-op threads (the partition of a reduction follows the thread count), no
    inter-op parallelism, sequential execution, deterministic kernels where a provider has a
    choice (CUDA), and idle threads that sleep instead of spinning (the machine is shared)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.use_deterministic_compute = True
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list[Any] = providers_for(device)
    if providers[0] == "CUDAExecutionProvider":
        index = torch.device(device).index or 0
        providers[0] = ("CUDAExecutionProvider", {"device_id": index})
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)


class OnnxModule(torch.nn.Module):
    """What diffusers reads of a component besides calling it: ``config`` (the replaced
    module's own), ``dtype`` (float32: the exports are float32) and ``device`` (where outputs
    go). It has no parameters, so ``onnx_bytes`` (the export files' size, about the weights
    onnxruntime holds) is what the warm pool counts for it (generation/model_pool.py).

    Inputs go to onnxruntime as CPU numpy arrays and outputs come back on ``device``.
    """

    def __init__(self, files: list[Path], config: Any, device: str, threads: int) -> None:
        super().__init__()
        self.session = session(files[0], device, threads)
        self.config = config
        self.onnx_bytes = sum(f.stat().st_size for f in files)
        self._device = torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def run(self, **inputs: torch.Tensor) -> torch.Tensor:
        feeds = {name: value.detach().cpu().contiguous().numpy() for name, value in inputs.items()}
        (output,) = self.session.run(None, feeds)
        return torch.from_numpy(output).to(self._device)


class OnnxTextEncoder(OnnxModule):
    """``CLIPTextModel`` as ``encode_prompt`` calls it: ids in, ``(last_hidden_state,)`` out."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **unused: Any,
    ) -> tuple[torch.Tensor]:
        if output_hidden_states:
            raise ValueError("clip_skip needs the hidden layers; the ONNX text encoder has none")
        return (self.run(input_ids=input_ids.to(torch.int64)),)


class OnnxUNet(OnnxModule):
    """``UNet2DConditionModel`` as the denoising loop calls it. The export takes one float32
    timestep per sample; conditioning the export lacks (``timestep_cond`` of LCM-distilled
    UNets with ``time_cond_proj_dim``, IP-adapter or LoRA-scale kwargs) is refused."""

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        timestep_cond: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        added_cond_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        **unused: Any,
    ) -> Any:
        if timestep_cond is not None or cross_attention_kwargs or added_cond_kwargs:
            raise ValueError(
                "the ONNX UNet takes sample, timestep and encoder_hidden_states only "
                "(no timestep_cond, cross_attention_kwargs or added_cond_kwargs)"
            )
        timesteps = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1)
        timesteps = timesteps.expand(sample.shape[0])
        noise = self.run(
            sample=sample.to(torch.float32),
            timestep=timesteps,
            encoder_hidden_states=encoder_hidden_states.to(torch.float32),
        )
        if not return_dict:
            return (noise,)
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=noise)


class OnnxVaeDecoder(OnnxModule):
    """``AutoencoderKL`` as the pipeline uses it after denoising: ``decode`` only (the export
    has no encoder, so image-to-image pipelines cannot use it)."""

    def decode(
        self, z: torch.Tensor, return_dict: bool = True, generator: Any = None, **unused: Any
    ) -> Any:
        image = self.run(latent_sample=z.to(torch.float32))
        if not return_dict:
            return (image,)
        from diffusers.models.autoencoders.vae import DecoderOutput

        return DecoderOutput(sample=image)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("the ONNX VAE holds the decoder only: call decode()")


def use_onnx(pipe: Any, folder: Path, device: str, *, threads: int | None = None) -> None:
    """Swap ``pipe``'s (a loaded diffusers ``StableDiffusionPipeline``) text encoder, UNet and
    VAE for onnxruntime sessions of the export in ``folder``, on ``device`` ("cpu" or "cuda…").

    ``threads``: onnxruntime's intra-op threads, fixed for the sessions' life (default:
    ``torch.get_num_threads()`` now). Renders replay byte for byte on one machine (measured
    with 1 and with 2 threads, which gave the same bytes too); docs/onnx.md has the measured
    difference from a torch render.

    The wrappers replace the pipeline's attributes, so ``pipe.components`` carries them and
    pipelines built from it (``type(pipe)(**pipe.components)``, the renderer's scheduler
    variants) share the sessions. Only the files' presence is checked here: check the export
    against the model with :func:`check_onnx_folder` first.
    """
    folder = Path(folder)
    for rel in COMPONENTS.values():
        if not (folder / rel).is_file():
            raise _refuse(folder, f"{rel} is missing")
    if getattr(pipe.unet.config, "time_cond_proj_dim", None) is not None:
        # The pipeline would pass a guidance embedding (timestep_cond) the export cannot take.
        raise _refuse(
            folder,
            "the model's UNet takes a guidance embedding (time_cond_proj_dim), which the "
            "ONNX export does not carry",
        )
    count = threads if threads is not None else torch.get_num_threads()

    def files(name: str) -> list[Path]:
        graph = folder / COMPONENTS[name]
        return [graph, *sorted(external_files(graph))]

    text_encoder = OnnxTextEncoder(files("text_encoder"), pipe.text_encoder.config, device, count)
    unet = OnnxUNet(files("unet"), pipe.unet.config, device, count)
    vae = OnnxVaeDecoder(files("vae_decoder"), pipe.vae.config, device, count)
    # diffusers' __setattr__ keeps the pipeline's config in step with its components.
    pipe.text_encoder = text_encoder
    pipe.unet = unet
    pipe.vae = vae
