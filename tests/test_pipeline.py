"""The render stage on the reference models, called as the actor calls it (no chain needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from devtools.rarity_fixtures import WEIGHTED
from generation import errors, pipeline
from generation.models import Collection, Token
from generation.render_seed import torch_seed_for

pytestmark = pytest.mark.django_db
SEED = "0x" + hashlib.sha256(b"a committed seed").hexdigest()


@pytest.fixture(autouse=True)
def render_cache(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.RENDER_CACHE_DIR = tmp_path / "renders"
    settings.RENDER_DEVICE = "cpu"
    return settings.RENDER_CACHE_DIR


def make_token(
    reference_models: Path,
    *,
    threshold: float,
    token_id: int = 1,
    seed: str = SEED,
    slug: str | None = None,
    **collection_fields: object,
) -> Token:
    collection, _ = Collection.objects.get_or_create(
        slug=slug or f"pipeline-{threshold}".replace(".", "-"),  # a valid slug: its page has a URL
        defaults={
            "name": "Pipeline",
            "chain_id": 31337,
            "contract_address": f"0x{abs(hash(slug or threshold)) % 10**12:040x}",
            "model_dir": str(reference_models / "diffusion"),
            "clip_dir": str(reference_models / "clip"),
            "prompt_template": "an abstract painting, token {token_id}",
            "style_prompt": "an abstract painting",
            "clip_threshold": threshold,
            "steps": 2,
            "max_attempts": 2,
            **collection_fields,
        },
    )
    return Token.objects.create(
        collection=collection,
        token_id=token_id,
        owner="0x" + "11" * 20,
        mint_tx_hash=f"0x{token_id:064x}",
        mint_log_index=0,
        mint_block_number=1,
        mint_block_hash="0x" + "22" * 32,
        expected_seed=seed,
        seed=seed,
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


def test_each_stage_moves_the_tokens_updated_at(reference_models: Path) -> None:
    # the API shows updated_at, and "untouched for N seconds" rules read it; the stages move
    # tokens with conditional UPDATEs, which Django's auto_now alone would not see
    token = make_token(reference_models, threshold=-1.0)
    seen = [token.updated_at]
    assert pipeline.run_render(token.pk) == Token.Status.RENDERED
    seen.append(Token.objects.get(pk=token.pk).updated_at)
    assert pipeline.run_pin(token.pk) == Token.Status.PINNED
    seen.append(Token.objects.get(pk=token.pk).updated_at)
    assert seen == sorted(seen) and len(set(seen)) == 3, seen


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
    with pytest.raises(errors.RenderFailed, match="cannot load the diffusion model"):
        pipeline.run_render(token.pk)


def test_it_records_the_stage_and_the_kind_of_error_when_a_stage_runs_out_of_retries(
    reference_models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from generation.tasks import record_failure
    from mintsite.observability.logs import ContextFilter

    caplog.handler.addFilter(ContextFilter())  # as on the console handler: the context fields
    token = make_token(reference_models, threshold=-1.0)
    # The message as Dramatiq's Retries middleware hands it to on_retry_exhausted.
    message = {
        "actor_name": "pin_token",
        "args": [token.pk],
        "options": {
            "traceback": "Traceback...\nipfs.errors.BackendUnavailable: Kubo RPC at "
            "http://kubo.internal:5001/api/v0/add?key=s3cret answered 503"
        },
    }
    record_failure.fn(message, {"retries": 5, "max_retries": 5})
    token.refresh_from_db()
    assert token.status == Token.Status.FAILED
    assert token.failure_reason == (
        "the pin gave up after 5 retries: the IPFS backend was unavailable"
    )
    # the error itself is in the log, with the token
    (record,) = [r for r in caplog.records if "the last try's error" in r.getMessage()]
    assert "kubo.internal:5001/api/v0/add?key=s3cret" in record.getMessage()
    assert record.token_pk == token.pk  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("last_line", "kind"),
    [
        ("TimeoutError: read timed out", "a service it depends on did not answer in time"),
        ("django.db.utils.OperationalError: server closed", "the database was unavailable"),
        ("FileExistsError: [Errno 17] /srv/x", "an unexpected FileExistsError"),
        ("somewhere.unloaded.Oops: secret", "an unexpected Oops"),
        ("garbage that names no class", "an unexpected error"),
    ],
)
def test_a_reason_names_a_kind_of_error_never_its_text(last_line: str, kind: str) -> None:
    from generation.failures import kind_of

    assert kind_of(last_line) == kind


def test_it_draws_traits_from_the_seed_and_puts_them_in_prompt_and_metadata(
    reference_models: Path,
) -> None:
    from generation.metadata import build_metadata
    from generation.traits import weighted_traits

    token = make_token(
        reference_models, threshold=-1.0, slug="weighted", rarity=WEIGHTED,
        prompt_template="an abstract painting {palette}, token {token_id}",
    )  # fmt: skip
    assert pipeline.run_render(token.pk) == Token.Status.RENDERED
    token.refresh_from_db()
    expected = weighted_traits(bytes.fromhex(SEED[2:]), WEIGHTED)
    assert token.traits == expected
    fragment = {"warm": "in warm reds", "cold": "in cold blues"}[expected["palette"]]
    assert token.render_record["render"]["prompt"] == f"an abstract painting {fragment}, token 1"
    metadata = build_metadata(token, "bafkreitest")
    probability = {"warm": 0.75, "cold": 0.25}[expected["palette"]]
    assert metadata["attributes"] == [{"trait_type": "palette", "value": expected["palette"]}]
    assert metadata["rarity"] == {"palette": probability}
    assert metadata["provenance"]["traits"] == expected


def test_it_rejects_a_render_identical_to_an_earlier_tokens_and_tries_again(
    reference_models: Path,
) -> None:
    # Given two tokens that would render the same image (same seed, same prompt), and a
    # collection rejecting images more similar than 0.9999 to an earlier token's
    fields = {"uniqueness_threshold": 0.9999, "prompt_template": "an abstract painting"}
    first = make_token(reference_models, threshold=-1.0, slug="unique", **fields)
    second = make_token(reference_models, threshold=-1.0, slug="unique", token_id=2, **fields)
    assert pipeline.run_render(first.pk) == Token.Status.RENDERED
    # When the second renders, its first attempt is the same image: rejected, attempt 1 accepted
    assert pipeline.run_render(second.pk) == Token.Status.RENDERED
    second.refresh_from_db()
    first.refresh_from_db()
    assert second.attempt == 1
    assert second.clip_scores["scores"]["uniqueness_max"] < 0.9999
    assert second.image_sha256 != first.image_sha256


def test_it_waits_for_earlier_seeds_in_quota_mode(reference_models: Path) -> None:
    quota = {
        "mode": "quota",
        "categories": [
            {
                "name": "palette",
                "options": [
                    {"name": "warm", "prompt": "warm", "quota": 1},
                    {"name": "cold", "prompt": "cold", "quota": 1},
                ],
            }
        ],
    }
    fields = {"rarity": quota, "max_supply": 2, "prompt_template": "painting {palette}"}
    first = make_token(reference_models, threshold=-1.0, slug="quota", seed="", **fields)
    second = make_token(reference_models, threshold=-1.0, slug="quota", token_id=2, **fields)
    # Token 2 cannot know what token 1 left until token 1's seed is committed
    with pytest.raises(errors.TraitsNotReady, match="token 2 waits"):
        pipeline.run_render(second.pk)
    second.refresh_from_db()
    assert second.status == Token.Status.SEED_COMMITTED
    Token.objects.filter(pk=first.pk).update(seed=SEED)
    assert pipeline.run_render(first.pk) == Token.Status.RENDERED
    assert pipeline.run_render(second.pk) == Token.Status.RENDERED
    # and the two tokens share out the quota exactly
    palettes = sorted(
        Token.objects.filter(collection__slug="quota").values_list("traits__palette", flat=True)
    )
    assert palettes == ["cold", "warm"]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"rarity": {"mode": "lottery", "categories": []}}, "rarity", "mode"),
        ({"rarity": WEIGHTED, "prompt_template": "art {hat}"}, "prompt_template", "hat"),
        ({"clip_threshold": 1.5}, "clip_threshold", "less than or equal to 1.0"),
    ],
)
def test_it_refuses_an_invalid_collection_naming_the_field(
    reference_models: Path, changes: dict, field: str, message: str
) -> None:
    from django.core.exceptions import ValidationError

    collection = make_token(reference_models, threshold=-1.0, slug="valid").collection
    for name, value in changes.items():
        setattr(collection, name, value)
    with pytest.raises(ValidationError) as caught:
        collection.full_clean()
    assert field in caught.value.message_dict
    assert message in " ".join(caught.value.message_dict[field])


def test_it_refuses_to_change_what_shapes_output_once_frozen(reference_models: Path) -> None:
    from django.core.exceptions import ValidationError

    collection = make_token(reference_models, threshold=-1.0, slug="frozen").collection
    Collection.objects.filter(pk=collection.pk).update(config_digest="0x" + "ab" * 32)
    collection.refresh_from_db()
    collection.description = "still editable"
    collection.full_clean()
    collection.steps = 50
    with pytest.raises(ValidationError, match="frozen"):
        collection.full_clean()


def test_it_reuses_the_cached_render_when_a_crashed_render_runs_again(
    reference_models: Path,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    from generation.rendering import get_renderer

    token = make_token(reference_models, threshold=-1.0, slug="cache")
    assert pipeline.run_render(token.pk) == Token.Status.RENDERED
    token.refresh_from_db()
    renders = get_renderer(token.collection.model_path(), "cpu").renders
    # When the worker died after rendering but before its result reached the database, the
    # message is delivered again to a token still waiting for its render
    Token.objects.filter(pk=token.pk).update(status=Token.Status.SEED_COMMITTED, image_sha256="")
    assert pipeline.run_render(token.pk) == Token.Status.RENDERED
    # Then no new render happens, and the result is the same image
    assert get_renderer(token.collection.model_path(), "cpu").renders == renders
    assert Token.objects.get(pk=token.pk).image_sha256 == token.image_sha256


def test_it_warms_every_collections_models_and_skips_a_broken_one(
    reference_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from generation.warmup import warm_up_all

    make_token(reference_models, threshold=-1.0, slug="warm")
    make_token(reference_models, threshold=-1.0, slug="broken-warm", model_dir=str(tmp_path / "x"))
    figures = warm_up_all()
    assert [f["collection"] for f in figures] == ["warm"]
    assert figures[0]["steady_render_s"] > 0
    assert "could not warm up broken-warm" in caplog.text


def test_it_checks_renders_against_the_collections_reference_images(
    reference_models: Path, tmp_path: Path
) -> None:
    from PIL import Image

    # Given a collection whose reference image is the very image its token 1 renders
    first = make_token(reference_models, threshold=-1.0, slug="style-source")
    pipeline.run_render(first.pk)
    first.refresh_from_db()
    own = pipeline.render_cache_path(first, 0)
    fields = {"style_images": [str(own)], "style_images_threshold": 0.9999}
    alike = make_token(reference_models, threshold=-1.0, slug="style-alike", **fields)
    # (same seed and prompt as the source: the render equals the reference)
    assert pipeline.run_render(alike.pk) == Token.Status.RENDERED
    alike.refresh_from_db()
    assert alike.clip_scores["scores"]["style_images"] >= 0.9999
    # When the reference is another picture altogether (a gradient), the gate rejects every try
    gradient = tmp_path / "gradient.png"
    Image.linear_gradient("L").convert("RGB").resize((64, 64)).save(gradient)
    fields = {"style_images": [str(gradient)], "style_images_threshold": 0.9999}
    other = make_token(reference_models, threshold=-1.0, slug="style-other", **fields)
    assert pipeline.run_render(other.pk) == Token.Status.NEEDS_REVIEW
    other.refresh_from_db()
    assert "style images: cosine similarity" in other.failure_reason


def test_it_refuses_reference_images_it_cannot_read(
    reference_models: Path,
    tmp_path: Path,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    from django.core.exceptions import ValidationError

    settings.MODEL_ROOTS = [reference_models, tmp_path]

    collection = make_token(reference_models, threshold=-1.0, slug="style-bad").collection
    collection.style_images = [str(tmp_path / "missing.png")]
    collection.style_images_threshold = 0.5
    with pytest.raises(ValidationError) as caught:
        collection.full_clean()
    assert "not a readable image" in " ".join(caught.value.message_dict["style_images"])


def test_the_uniqueness_index_reads_each_embedding_once_and_drops_tokens_that_left(
    reference_models: Path,
) -> None:
    from generation.clip_gate import embedding_to_bytes
    from generation.uniqueness import EmbeddingIndex

    fields = {"uniqueness_threshold": 0.9}
    tokens = [
        make_token(reference_models, threshold=-1.0, slug="index", token_id=i, **fields)
        for i in range(1, 5)
    ]
    vectors = np.eye(4, 8, dtype=np.float32)
    for token, vector in zip(tokens[:3], vectors, strict=False):
        Token.objects.filter(pk=token.pk).update(
            status=Token.Status.RENDERED, image_embedding=embedding_to_bytes(vector)
        )
    index = EmbeddingIndex(tokens[0].collection_id)
    # the render of token 4 is compared with tokens 1-3, exactly as stored
    assert np.array_equal(index.earlier(tokens[3].pk), vectors[:3])
    assert index.fetched == 3
    # token 4 is accepted; token 2 is reorged away: the next render sees 1, 3 and 4, and only
    # token 4's vector is read from the database
    Token.objects.filter(pk=tokens[3].pk).update(
        status=Token.Status.RENDERED, image_embedding=embedding_to_bytes(vectors[3])
    )
    Token.objects.filter(pk=tokens[1].pk).update(status=Token.Status.REORGED)
    fresh = make_token(reference_models, threshold=-1.0, slug="index", token_id=5, **fields)
    assert np.array_equal(index.earlier(fresh.pk), vectors[[0, 2, 3]])
    assert index.fetched == 4


@pytest.mark.parametrize("behaviour", ["pins", "wrong-cid"])
def test_the_pin_stage_trusts_no_cid_it_did_not_compute(
    reference_models: Path, settings, behaviour: str
) -> None:  # type: ignore[no-untyped-def]
    from ipfs.cid import compute_cid
    from tests.ipfs_servers import KuboRpcServer

    token = make_token(reference_models, threshold=-1.0, slug=f"kubo-{behaviour}")
    assert pipeline.run_render(token.pk) == Token.Status.RENDERED
    with KuboRpcServer(behaviour=behaviour).running() as kubo:
        settings.IPFS_BACKEND, settings.IPFS_KUBO_URL = "kubo", kubo.url
        settings.IPFS_RETRIES = 0
        if behaviour == "pins":
            assert pipeline.run_pin(token.pk) == Token.Status.PINNED
            token.refresh_from_db()
            image = pipeline.render_cache_path(token, 0).read_bytes()
            assert token.image_cid == compute_cid(image)
            assert kubo.pins == {token.image_cid, token.metadata_cid}
        else:
            # a node that answers another CID for the bytes: the stage fails, nothing is pinned
            with pytest.raises(errors.PinFailed, match="CID"):
                pipeline.run_pin(token.pk)
            token.refresh_from_db()
            assert token.status == Token.Status.RENDERED
            assert token.metadata_cid == "" and not kubo.pins


def test_it_records_each_stage_and_every_rejected_attempt(reference_models: Path) -> None:
    token = make_token(reference_models, threshold=1.0, slug="history")
    assert pipeline.run_render(token.pk) == Token.Status.NEEDS_REVIEW
    history = list(token.events.values_list("status", "detail"))
    assert [status for status, _ in history] == [
        "RENDERING", "RENDERING", "RENDERING", "NEEDS_REVIEW"
    ]  # fmt: skip
    assert history[1][1].startswith("attempt 0 rejected by the CLIP gate: style score")
    assert history[2][1].startswith("attempt 1 rejected")
    assert "rejected all 2 attempts" in history[3][1]


def test_a_paused_collection_renders_nothing_until_resumed(reference_models: Path) -> None:
    token = make_token(reference_models, threshold=-1.0, slug="paused")
    Collection.objects.filter(pk=token.collection_id).update(paused=True)
    assert pipeline.run_render(token.pk) is None
    token.refresh_from_db()
    assert token.status == Token.Status.SEED_COMMITTED and not token.events.exists()
    Collection.objects.filter(pk=token.collection_id).update(paused=False)
    assert pipeline.run_render(token.pk) == Token.Status.RENDERED


def test_a_render_whose_claim_was_lost_is_retried_not_dropped(reference_models: Path) -> None:
    # A claim committed without waiting for the disk may be lost in a database crash: the
    # token is then back at SEED_COMMITTED when its render ends, and the message must be
    # retried rather than acknowledged with nothing done.
    token = make_token(reference_models, threshold=-1.0, slug="lost-claim")
    with pytest.raises(RuntimeError, match="went back to SEED_COMMITTED while rendering"):
        pipeline._moved_while_rendering(token.pk)
    Token.objects.filter(pk=token.pk).update(status=Token.Status.PUBLISHED)
    assert pipeline._moved_while_rendering(token.pk) is None  # someone else has it


def test_a_model_that_cannot_load_fails_the_token_without_publishing_the_servers_path(
    reference_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from generation.tasks import render_token

    # Given a collection whose model folder is a server path that does not exist
    hidden = tmp_path / "srv-private-mount" / "weights"
    token = make_token(reference_models, threshold=-1.0, slug="hidden-path", model_dir=str(hidden))
    # When the render worker takes the token
    render_token.fn(token.pk)
    # Then the token failed, its public reason naming the setting, not the path
    token.refresh_from_db()
    assert token.status == Token.Status.FAILED
    assert token.failure_reason.startswith("cannot load the diffusion model (model_dir): ")
    shown = [token.failure_reason, *token.events.values_list("detail", flat=True)]
    assert not any("srv-private-mount" in text for text in shown)
    # and the log has the path, for the operator
    assert any(str(hidden) in r.getMessage() for r in caplog.records)


def test_a_pinning_service_refusal_fails_the_token_without_its_url_or_answer(
    reference_models: Path, settings, kubo, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    from generation.tasks import pin_token
    from tests.ipfs_servers import PinningServiceServer

    token = make_token(reference_models, threshold=-1.0, slug="refused-pin")
    assert pipeline.run_render(token.pk) == Token.Status.RENDERED
    with PinningServiceServer().running() as service:
        # Given a pinning service that refuses the configured token
        settings.IPFS_BACKEND = "pinning-service"
        settings.IPFS_PINNING_SERVICE_URL = service.url
        settings.IPFS_PINNING_SERVICE_TOKEN = "wrong"
        settings.IPFS_KUBO_URL = kubo.url
        # When the pin worker takes the token
        pin_token.fn(token.pk)
    # Then it failed, saying the backend refused, without the service's URL or answer
    token.refresh_from_db()
    assert token.status == Token.Status.FAILED
    assert token.failure_reason == "the IPFS backend refused to pin it: BackendRejected"
    assert any(service.url in r.getMessage() for r in caplog.records)
    assert any("bad access token" in r.getMessage() for r in caplog.records)
