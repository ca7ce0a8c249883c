"""The CLIP gate: score a rendered image against text with an open_clip model.

The model is loaded from a local folder written by ``open_clip.push_to_hf_hub.save_for_hf``
(``open_clip_config.json`` plus weights), through ``open_clip``'s ``local-dir:`` schema, so the
same code loads the reference model and real checkpoints saved that way. Nothing is fetched.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from generation.reference_models import model_fingerprint

SCORE_DECIMALS = 6


class ClipScorer:
    """A loaded open_clip model, its preprocessing and tokenizer; load once per process."""

    def __init__(self, clip_dir: Path, device: str | None = None) -> None:
        import open_clip

        clip_dir = Path(clip_dir)
        if not (clip_dir / "open_clip_config.json").is_file():
            raise FileNotFoundError(
                f"{clip_dir} has no open_clip_config.json; expected a folder written by "
                "open_clip's save_for_hf (did you run `manage.py build_reference_models`?)"
            )
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.clip_dir = clip_dir
        self.device = device
        self.fingerprint = model_fingerprint(clip_dir)
        name = "local-dir:" + str(clip_dir)
        # float32 on every device: scores are recorded in provenance and compared to
        # thresholds, and the CLIP forward pass is cheap next to the diffusion model.
        model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(name)

    @torch.inference_mode()
    def score(self, image: Image.Image, texts: list[str]) -> list[float]:
        """Cosine similarity of ``image`` to each of ``texts``, rounded to 6 decimals."""
        if not texts:
            return []
        pixels = self.preprocess(image.convert("RGB")).unsqueeze(0).to(self.device)
        tokens = self.tokenizer(list(texts)).to(self.device)
        image_features = F.normalize(self.model.encode_image(pixels).float(), dim=-1)
        text_features = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
        similarities = (image_features @ text_features.T)[0].tolist()
        return [round(float(s), SCORE_DECIMALS) for s in similarities]


_scorers: dict[tuple[Path, str | None], ClipScorer] = {}
_scorers_lock = threading.Lock()


def get_scorer(clip_dir: Path, device: str | None = None) -> ClipScorer:
    """Return this process's ``ClipScorer`` for ``clip_dir``, loading it on first use."""
    key = (Path(clip_dir).resolve(), device)
    with _scorers_lock:
        scorer = _scorers.get(key)
        if scorer is None:
            scorer = _scorers[key] = ClipScorer(key[0], device)
        return scorer


@dataclass
class GateResult:
    passed: bool
    scores: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


def check_image(
    scorer: ClipScorer, image: Image.Image, style_prompt: str, style_threshold: float
) -> GateResult:
    """Pass ``image`` when its CLIP score against ``style_prompt`` reaches ``style_threshold``."""
    (style_score,) = scorer.score(image, [style_prompt])
    reasons = []
    if style_score < style_threshold:
        reasons.append(
            f"style score {style_score:.6f} is below the threshold {style_threshold:.6f} "
            f"for {style_prompt!r}"
        )
    return GateResult(
        passed=not reasons,
        scores={"style": style_score},
        thresholds={"style": style_threshold},
        reasons=reasons,
    )
