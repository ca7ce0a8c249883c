"""Export a diffusers Stable Diffusion folder's text encoder, UNet and VAE decoder to ONNX.

Written with ``torch.onnx.export`` (its default, torch.export-based exporter, which needs
``onnxscript``), not optimum-onnx: optimum-onnx 0.1.0 requires ``transformers<4.58``, and this
project runs transformers 5 (installing it would downgrade transformers and huggingface_hub).
docs/onnx.md says more.

Layout written under ``out`` (see :data:`generation.onnx_runtime.COMPONENTS`)::

    text_encoder/model.onnx   input_ids (batch, 77) int64 -> last_hidden_state
    unet/model.onnx           sample, timestep (batch,) float32, encoder_hidden_states -> noise
    vae_decoder/model.onnx    latent_sample (already divided by scaling_factor) -> image
    onnx.json                 the source model's fingerprint, opset, versions, each file's sha256

Batch and image size are dynamic (the UNet's latent sides in multiples of 2**(levels-1)), so
one export serves every size a collection renders. Weights are stored inside each ``.onnx`` file
when it stays under protobuf's 2 GB limit, else beside it (``model.onnx.data``); either way
onnx.json lists and hashes every file, and :func:`generation.onnx_runtime.onnx_fingerprint`
covers them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from generation.errors import ModelReferenceError
from generation.onnx_runtime import (
    COMPONENTS,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    file_sha256,
    onnx_fingerprint,
    onnx_weight_files,
)
from generation.reference_models import load_local_pipeline, model_fingerprint, quiet_progress_bars
from generation.torch_threads import one_torch_thread

#: The ONNX opset the exports target: 18 is what torch's exporter writes natively and what
#: onnxruntime has run for years (1.14 and later).
OPSET = 18

#: Each graph's one output, by the name diffusers gives it.
OUTPUT_NAMES = {"text_encoder": "last_hidden_state", "unet": "out_sample", "vae_decoder": "sample"}

# A single ONNX protobuf cannot exceed 2 GB; larger models keep their weights beside the graph.
_PROTOBUF_LIMIT = 2 * 1024**3 - 64 * 1024**2


class _TextEncoder(torch.nn.Module):
    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids, return_dict=False)[0]


class _UNet(torch.nn.Module):
    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class _VaeDecoder(torch.nn.Module):
    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent_sample, return_dict=False)[0]


def export_onnx(model_dir: Path, out: Path) -> dict[str, Any]:
    """Export the diffusers StableDiffusion folder ``model_dir`` to ``out`` and return the
    manifest written there (onnx.json).

    Exported in float32 on the CPU whatever the machine, on one torch thread, so the same
    folder and library versions give the same graphs. The folder is built beside ``out`` and
    moved into place; an existing ``out`` is replaced only once the new export is complete.
    """
    model_dir, out = Path(model_dir), Path(out)
    if not (model_dir / "model_index.json").is_file():
        raise ModelReferenceError(
            "model_dir", f"{model_dir} has no model_index.json: not a diffusers pipeline folder"
        )
    source_fingerprint = model_fingerprint(model_dir)
    quiet_progress_bars()
    pipe = load_local_pipeline(model_dir)  # float32 on the CPU: diffusers' default
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=out.parent) as tmp:
        staging = Path(tmp) / "export"
        with one_torch_thread(), torch.no_grad():
            inputs = _export_all(pipe, staging)
        files = {
            file.relative_to(staging).as_posix(): file_sha256(file)
            for file in sorted(onnx_weight_files(staging))
        }
        manifest = {
            "format": MANIFEST_FORMAT,
            "source_fingerprint": source_fingerprint,
            "fingerprint": onnx_fingerprint(staging),
            "opset": OPSET,
            "exporter": "torch.onnx.export (torch.export-based, onnxscript)",
            "dtype": "float32",
            "inputs": inputs,
            "files": files,
            "versions": _versions(),
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    return manifest


def _export_all(pipe: Any, out: Path) -> dict[str, dict[str, list[int | str]]]:
    """Export the three parts; returns each part's input shapes (names where dynamic)."""
    dim = torch.export.Dim
    batch = dim("batch", min=1, max=1024)
    # The UNet halves the latent once per level below the top and doubles it back: its latent
    # sides are multiples of 2**(levels-1) (8 for Stable Diffusion 1.x's 64x64 at 512 pixels).
    multiple = 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    height = multiple * dim("height_blocks", min=1, max=1024)
    width = multiple * dim("width_blocks", min=1, max=1024)
    # Example sizes: torch.export specialises dimensions of size 0 or 1, and equal sizes may
    # be taken for one dimension, so batch 2 and latents of 2 by 3 multiples.
    rows, cols = 2 * multiple, 3 * multiple
    length = int(pipe.tokenizer.model_max_length)
    channels = int(pipe.unet.config.in_channels)
    hidden = int(pipe.text_encoder.config.hidden_size)
    vae_channels = int(pipe.vae.config.latent_channels)
    # part -> (module, {input: (example, {axis: dynamic dim}, shape as onnx.json says it)})
    Inputs = dict[str, tuple[torch.Tensor, dict[int, Any], list[int | str]]]
    parts: dict[str, tuple[torch.nn.Module, Inputs]] = {
        "text_encoder": (
            _TextEncoder(pipe.text_encoder),
            {
                "input_ids": (
                    torch.zeros(2, length, dtype=torch.int64),
                    {0: batch},
                    ["batch", length],
                )
            },
        ),
        "unet": (
            _UNet(pipe.unet),
            {
                "sample": (
                    torch.randn(2, channels, rows, cols),
                    {0: batch, 2: height, 3: width},
                    [
                        "batch",
                        channels,
                        f"height (multiple of {multiple})",
                        f"width (multiple of {multiple})",
                    ],
                ),
                "timestep": (torch.full((2,), 500.0), {0: batch}, ["batch"]),
                "encoder_hidden_states": (
                    torch.randn(2, length, hidden),
                    {0: batch},
                    ["batch", length, hidden],
                ),
            },
        ),
        "vae_decoder": (
            _VaeDecoder(pipe.vae),
            {
                "latent_sample": (
                    torch.randn(2, vae_channels, rows, cols),
                    {0: batch, 2: dim("latent_height", min=1), 3: dim("latent_width", min=1)},
                    ["batch", vae_channels, "height", "width"],
                )
            },
        ),
    }
    for name, (module, inputs) in parts.items():
        path = out / COMPONENTS[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        module.eval()
        big = sum(p.numel() * p.element_size() for p in module.parameters()) > _PROTOBUF_LIMIT
        with warnings.catch_warnings():
            # The inputs share one batch dimension, which the exporter names once: it warns.
            warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
            program = torch.onnx.export(
                module,
                kwargs={key: example for key, (example, _, _) in inputs.items()},
                input_names=list(inputs),
                output_names=[OUTPUT_NAMES[name]],
                dynamic_shapes={key: axes for key, (_, axes, _) in inputs.items()},
                opset_version=OPSET,
                dynamo=True,
                external_data=big,
                verbose=False,
            )
        assert program is not None  # dynamo=True always returns the program
        program.save(str(path), external_data=big)
        _strip_debug_metadata(path)
    return {
        name: {key: shape for key, (_, _, shape) in inputs.items()}
        for name, (_, inputs) in parts.items()
    }


def _strip_debug_metadata(path: Path) -> None:
    """Drop the exporter's debug notes from the saved graph: each node's Python stack trace
    (absolute source paths, line numbers), FX node text and the graph's symbolic-shape names.
    They change with the checkout's path and from run to run; without them the same model and
    library versions export to the same bytes, so an export's fingerprint can be reproduced
    from its source model."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    del model.metadata_props[:]
    graphs = [model.graph]
    nodes = [node for function in model.functions for node in function.node]
    for function in model.functions:
        del function.metadata_props[:]
    while graphs:
        graph = graphs.pop()
        del graph.metadata_props[:]
        nodes += graph.node
        for node in graph.node:
            graphs += [attr.g for attr in node.attribute if attr.HasField("g")]
            graphs += [g for attr in node.attribute for g in attr.graphs]
    for node in nodes:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(model, str(path))


def _versions() -> dict[str, str]:
    names = ("torch", "onnx", "onnxscript", "onnxruntime", "diffusers", "transformers")
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
