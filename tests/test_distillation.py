"""``manage.py distill`` (generation/reference_world/distillation.py): a student that is a model
of its own, loaded by the worker's renderer with its own scheduler, and reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from generation.reference_models import model_fingerprint
from generation.reference_world.collection import FINGERPRINTS
from generation.reference_world.distillation import Distillation, distil
from generation.render_levers import Levers, lever_record
from generation.rendering import Renderer, RenderParams

WORLD = Path(settings.REFERENCE_WORLD_DIR)
TINY = Distillation(steps=3, images=32, batch_size=8, warmup_steps=1)


def test_the_committed_student_is_the_record_s_and_names_the_committed_teacher() -> None:
    record = json.loads((WORLD / "student" / "distillation.json").read_text())
    assert record["fingerprint"] == model_fingerprint(WORLD / "student")
    assert record["teacher_fingerprint"] == FINGERPRINTS["diffusion"]
    accuracy = {e["steps"]: e["accuracy"]["all"] for e in record["evaluation"]}
    assert accuracy[4] > accuracy[1]  # the figures docs/latency.md quotes come from here
    distilled = lever_record(Levers(), WORLD / "student")["distilled_from"]
    assert distilled["fingerprint"] == FINGERPRINTS["diffusion"]
    assert lever_record(Levers(), WORLD / "diffusion") == {}


def test_distilling_twice_gives_the_same_weights_and_a_loadable_lcm_student(
    tmp_path: Path,
) -> None:
    first = distil(WORLD / "diffusion", tmp_path / "a", TINY, log=lambda line: None)
    second = distil(WORLD / "diffusion", tmp_path / "b", TINY, log=lambda line: None)
    assert first["fingerprint"] == second["fingerprint"] != FINGERPRINTS["diffusion"]
    renderer = Renderer(tmp_path / "a", "cpu")
    assert renderer.scheduler_name == "LCMScheduler"
    params = RenderParams("a small red circle on a light background", "", 2, 1.0, 64, 64)
    image = renderer.render(params, b"seed", 0)
    assert image.size == (64, 64)
    assert image.tobytes() == renderer.render(params, b"seed", 0).tobytes()


def test_a_teacher_that_is_not_a_diffusers_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"--teacher .*not a diffusers folder"):
        call_command("distill", "--teacher", str(tmp_path), "--out", str(tmp_path / "s"))
