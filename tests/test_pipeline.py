"""The render stage on the reference models, called as the actor calls it (no chain needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from generation import pipeline
from generation.models import Collection, Token
from generation.rendering import torch_seed_for

pytestmark = pytest.mark.django_db
SEED = "0x" + hashlib.sha256(b"a committed seed").hexdigest()


@pytest.fixture(autouse=True)
def render_cache(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.RENDER_CACHE_DIR = tmp_path / "renders"
    settings.RENDER_DEVICE = "cpu"
    return settings.RENDER_CACHE_DIR


def make_token(reference_models: Path, *, threshold: float, token_id: int = 1) -> Token:
    collection, _ = Collection.objects.get_or_create(
        slug=f"pipeline-{threshold}",
        defaults=dict(
            name="Pipeline",
            chain_id=31337,
            contract_address=f"0x{int(threshold * 10 + 20):040x}",
            model_dir=str(reference_models / "diffusion"),
            clip_dir=str(reference_models / "clip"),
            prompt_template="an abstract painting, token {token_id}",
            style_prompt="an abstract painting",
            clip_threshold=threshold,
            steps=2,
            max_attempts=2,
        ),
    )
    return Token.objects.create(
        collection=collection,
        token_id=token_id,
        owner="0x" + "11" * 20,
        mint_tx_hash=f"0x{token_id:064x}",
        mint_log_index=0,
        mint_block_number=1,
        mint_block_hash="0x" + "22" * 32,
        expected_seed=SEED,
        seed=SEED,
        status=Token.Status.SEED_COMMITTED,
    )


def test_it_renders_and_records_what_shaped_the_image(reference_models: Path) -> None:
    token = make_token(reference_models, threshold=-1.0)
    assert pipeline.run_render(token.pk) == Token.Status.RENDERED
    token.refresh_from_db()
    image = pipeline.render_cache_path(token, 0).read_bytes()
    assert image.startswith(b"\x89PNG")
    assert token.image_sha256 == hashlib.sha256(image).hexdigest()
    record = token.render_record
    assert record["torch_seed"] == torch_seed_for(bytes.fromhex(SEED[2:]), 0)
    assert record["render"]["prompt"] == "an abstract painting, token 1"
    assert record["model"]["fingerprint"].startswith("sha256:")
    assert record["model"]["dtype"] == "float32"


def test_it_renders_the_same_image_for_the_same_seed(reference_models: Path) -> None:
    first = make_token(reference_models, threshold=-1.0, token_id=1)
    second = make_token(reference_models, threshold=-1.0, token_id=1 + 1)
    second.collection.prompt_template = "an abstract painting, token 1"
    second.collection.save()
    pipeline.run_render(first.pk)
    pipeline.run_render(second.pk)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.image_sha256 == second.image_sha256


def test_it_sends_a_token_the_gate_keeps_rejecting_to_review(reference_models: Path) -> None:
    token = make_token(reference_models, threshold=1.0)
    assert pipeline.run_render(token.pk) == Token.Status.NEEDS_REVIEW
    token.refresh_from_db()
    assert token.attempt == 2
    assert "rejected all 2 attempts" in token.failure_reason
    assert "below the threshold 1.000000" in token.failure_reason
    assert not pipeline.render_cache_path(token, 0).exists()
    assert token.image_cid == token.metadata_cid == ""


def test_it_does_nothing_for_a_token_another_delivery_already_took(reference_models: Path) -> None:
    token = make_token(reference_models, threshold=-1.0)
    pipeline.run_render(token.pk)
    # A redelivered message finds the token past its stage and leaves it alone.
    assert pipeline.run_render(token.pk) is None
    token.refresh_from_db()
    assert token.status == Token.Status.RENDERED


def test_it_fails_a_token_whose_model_folder_is_missing(
    reference_models: Path, tmp_path: Path
) -> None:
    token = make_token(reference_models, threshold=-1.0)
    Collection.objects.filter(pk=token.collection_id).update(model_dir=str(tmp_path / "nowhere"))
    with pytest.raises(pipeline.RenderFailed, match="cannot load the diffusion model"):
        pipeline.run_render(token.pk)


def test_it_records_the_last_error_when_a_stage_runs_out_of_retries(
    reference_models: Path,
) -> None:
    from generation.tasks import record_failure

    token = make_token(reference_models, threshold=-1.0)
    # The message as Dramatiq's Retries middleware hands it to on_retry_exhausted.
    message = {
        "actor_name": "publish_token",
        "args": [token.pk],
        "options": {"traceback": "Traceback...\nrequests.exceptions.ConnectionError: node away"},
    }
    record_failure.fn(message, {"retries": 5, "max_retries": 5})
    token.refresh_from_db()
    assert token.status == Token.Status.FAILED
    assert token.failure_reason == (
        "publish_token gave up after 5 retries: requests.exceptions.ConnectionError: node away"
    )
