"""What a collection manager's review of a token means: approving a rejected render, or
rendering more attempts.

A token lands in NEEDS_REVIEW when the CLIP gate rejected every one of its collection's
``max_attempts`` renders: attempts ``0 .. max_attempts - 1`` were tried, ``token.attempt`` is
then ``max_attempts``, and ``token.clip_scores`` holds the gate's scores of the last attempt.
Each rejected image stays in the render cache (``RENDER_CACHE_DIR/by-inputs``), keyed by every
input that shaped it (see ``generation.pipeline.cached_render``).

A manager has two ways out of review, both started from the admin and both run by the render
workers (the actors below, on the render queue), where the models are loaded and the render
cache is the one that holds the rejected images:

Approve (:func:`approve`, actor ``approve_token``)
    Accept the image of the LAST rejected attempt (``token.attempt - 1``, the one the admin
    shows) as it is, despite the gate. The image is looked up through ``cached_render`` with the
    same inputs, so it is the very image the gate saw; nothing is rendered. When the cache no
    longer holds it (cleared, or the worker runs with another device or dtype), the approval is
    refused: the token stays NEEDS_REVIEW and its history says why. Otherwise the token becomes
    RENDERED exactly as if that attempt had passed: the PNG is written where the pin stage reads
    it, its CLIP embedding and near-duplicate signature are stored (later tokens' uniqueness
    checks count them), and
    ``render_record`` is the record a passing render gets, with the gate's scores and
    thresholds as they were plus ``approved_by`` (the manager's username), ``approved_at`` and
    ``gate_rejection`` (the gate's reasons). Its ``clip`` part, which the metadata publishes as
    provenance, gains ``review: {"decision": "approved", "reasons": [...]}`` so that a verifier
    reading scores below the thresholds also reads that a person accepted them (the username is
    not published). Then the actor hands it to the pin stage, and it goes on like any other.

Re-render (:func:`rerender`, actor ``rerender_token``)
    Another round of the collection's ``max_attempts`` attempts, the counter continuing where
    it stopped: a collection with ``max_attempts = 3`` tried attempts 0, 1, 2, so a re-render
    tries 3, 4, 5 (each with its own generator seed from (seed, attempt), as every attempt has;
    the provenance records it, so anyone can replay it). The gate applies unchanged. The first
    attempt that passes makes the token RENDERED (``render_record`` with ``rerendered_by``, and
    ``clip.review = {"decision": "re-rendered", "earlier_attempts": 3}``) and it is pinned; if
    all are rejected the token is back in NEEDS_REVIEW with the new reasons, ready for another
    decision. A paused collection renders nothing, so a re-render of its tokens waits in
    NEEDS_REVIEW (refused in the admin, and by the actor if the pause came later).

Neither changes the collection's frozen config. The frozen ``max_attempts`` and thresholds still
describe what the pipeline does on its own; an attempt number past ``max_attempts`` or a score
below a threshold appears only on tokens a manager reviewed, and each token's event history
names who did what.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from PIL import Image

from foundation.files import write_atomically
from generation import events, pipeline, stages
from generation.errors import NotInCache, PipelineError, ReviewRefused, TraitsNotReady
from generation.models import Collection, Token
from generation.render_levers import lever_record, levers_in

log = logging.getLogger(__name__)
Status = Token.Status


# --------------------------------------------------------------------------------------------
# What the admin's actions do (each checks the token, records the step, sends the message once
# the database has it; a refusal raises ReviewRefused with the reason for the manager)


def retry_stage(token: Token) -> stages.Stage:
    """The stage a FAILED token goes back to: the first whose result it lacks
    (``stages.resume_point``), refused when the contract stored another seed than the one
    derived from the mint block (no retry can fix that)."""
    if token.seed and token.seed != token.expected_seed:
        raise ReviewRefused(
            f"the contract stored seed {token.seed}, not {token.expected_seed} derived from its "
            "mint block; sending it back cannot fix that"
        )
    return stages.resume_point(token)


def retry(token: Token, requested_by: str) -> str:
    """Put a FAILED token back where its failed stage starts and send that stage its message.

    Returns the stage retried. The reason it failed stays in its history (the FAILED event) and
    in this step's event."""
    if token.status != Status.FAILED:
        raise ReviewRefused(f"it is {token.get_status_display()}, not failed")
    stage = retry_stage(token)
    with transaction.atomic():
        updated = Token.objects.filter(pk=token.pk, status=Status.FAILED).update(
            status=stage.acts_on, failure_reason="", publish_claim=""
        )
        if not updated:
            raise ReviewRefused("it changed status meanwhile")
        detail = f"retry of the {stage.name} stage by {requested_by}"
        if token.failure_reason:
            detail += f" (it had failed: {token.failure_reason})"
        events.record([token.pk], stage.acts_on, detail)
        transaction.on_commit(lambda: stages.send_for(token, stage))
    return stage.name


def queue_approval(token: Token, requested_by: str) -> int:
    """Have a render worker approve the last rejected attempt; returns that attempt."""
    if token.status != Status.NEEDS_REVIEW:
        raise ReviewRefused(f"it is {token.get_status_display()}, not in review")
    if token.attempt < 1:
        raise ReviewRefused("no attempt was rendered, so there is no image to approve")
    attempt = token.attempt - 1
    transaction.on_commit(lambda: stages.send(stages.APPROVE, token.pk, requested_by, attempt))
    return attempt


def queue_rerender(token: Token, requested_by: str) -> range:
    """Have a render worker try another round of attempts; returns the attempts it will try."""
    if token.status != Status.NEEDS_REVIEW:
        raise ReviewRefused(f"it is {token.get_status_display()}, not in review")
    if token.collection.paused:
        raise ReviewRefused(
            f"collection {token.collection.slug} is paused; unpause it to render again"
        )
    attempts = range(token.attempt, token.attempt + token.collection.max_attempts)
    transaction.on_commit(
        lambda: stages.send(stages.RERENDER, token.pk, requested_by, attempts.stop)
    )
    return attempts


# --------------------------------------------------------------------------------------------
# Finding a rejected attempt's image in the render cache


class _CacheOnly:
    """Put in the batcher's place in ``pipeline.cached_render``: a cache miss raises
    ``NotInCache`` instead of rendering, so a lookup never costs a render."""

    def render(self, params: Any, seed: bytes, attempt: int) -> Image.Image:
        raise NotInCache(
            f"the image of attempt {attempt} is not in the render cache "
            f"({settings.RENDER_CACHE_DIR}/by-inputs): the cache was cleared, or it was "
            "rendered with another device or dtype than this process uses"
        )


@dataclass(frozen=True)
class RenderKey:
    """What ``cached_render`` reads from a renderer to find a render (its cache key), without
    the model's weights loaded: lets the admin show a rejected image it did not render."""

    fingerprint: str
    scheduler_name: str
    dtype: str  # as str(torch dtype) reads: "torch.float32"
    device: str
    lever_record: dict[str, Any] = field(default_factory=dict, hash=False)

    def scheduler_for(self, params: Any) -> str:
        return params.scheduler or self.scheduler_name


@lru_cache(maxsize=16)
def _fingerprint(model_path: str) -> str:
    # Hashes the weights once per process (seconds for a full-size model).
    from generation.reference_models import model_fingerprint

    return model_fingerprint(Path(model_path))


@lru_cache(maxsize=16)
def _lever_record(levers: Any, model_path: str) -> dict[str, Any]:
    # Hashes the adapters and the ONNX export once per process, as _fingerprint the weights.
    return lever_record(levers, Path(model_path))


def render_keys(collection: Collection) -> list[RenderKey]:
    """The renderer identities a render of ``collection`` may have been cached under: those
    its rendered tokens record (the workers' own), then what this process's settings give."""
    keys: list[RenderKey] = []
    records = (
        Token.objects.filter(collection=collection)
        .exclude(render_record={})
        .order_by("-updated_at")
        .values_list("render_record", flat=True)[:20]
    )
    for record in records:
        model = record.get("model", {})
        try:
            key = RenderKey(
                model["fingerprint"],
                model["scheduler"],
                f"torch.{model['dtype']}",
                model["device"],
                levers_in(model),
            )
        except (KeyError, TypeError):
            continue
        if key not in keys:
            keys.append(key)
    try:
        import torch

        # the renderer's own rules for its device and dtype (generation/rendering.py)
        from generation.rendering import _dtype, scheduler_class_name

        device = settings.RENDER_DEVICE or ("cuda" if torch.cuda.is_available() else "cpu")
        key = RenderKey(
            _fingerprint(str(collection.model_path())),
            scheduler_class_name(
                collection.model_path(), collection.model_config_path(), collection.scheduler
            ),
            str(_dtype(device, os.environ.get("RENDER_DTYPE"))),
            device,
            _lever_record(collection.levers(), str(collection.model_path())),
        )
    except (OSError, ValueError) as exc:  # the model is gone or unreadable here
        log.info("%s: no render key from this process's settings: %s", collection.slug, exc)
    else:
        if key not in keys:
            keys.append(key)
    return keys


def _prompt_and_traits(token: Token) -> tuple[bytes, dict[str, str], str]:
    from generation.traits import render_prompt

    collection = token.collection
    seed = token.seed_bytes
    try:
        traits = pipeline.traits_for(token, seed)
        prompt = render_prompt(
            collection.prompt_template,
            traits,
            collection.rarity,
            token_id=token.token_id,
            collection=collection.name,
        )
    except (TraitsNotReady, KeyError, IndexError, ValueError) as exc:
        raise ReviewRefused(f"its prompt cannot be rebuilt: {exc}") from exc
    return seed, traits, prompt


def rejected_image(token: Token, attempt: int) -> Image.Image | None:
    """The cached image of one of ``token``'s rejected attempts, or None when the cache does not
    have it under any renderer identity this process knows (see :func:`render_keys`)."""
    if not token.seed or attempt < 0:
        return None
    try:
        seed, _, prompt = _prompt_and_traits(token)
    except ReviewRefused:
        return None
    params = pipeline.render_params(token.collection, prompt)
    for key in render_keys(token.collection):
        try:
            return pipeline.cached_render(key, params, seed, attempt, _CacheOnly())
        except NotInCache:
            continue
    return None


# --------------------------------------------------------------------------------------------
# Approve


def approve(token_pk: int, approved_by: str, attempt: int | None = None) -> str | None:
    """Accept the last rejected attempt of a NEEDS_REVIEW token (see the module doc).

    ``attempt`` is the attempt the manager saw (``token.attempt - 1`` then); if the token has
    moved on since, nothing happens. Returns the token's new status (RENDERED), NEEDS_REVIEW when
    the approval was refused (the reason is in its history and ``failure_reason``), or None when
    the token is not in review any more.
    """
    token = (
        Token.objects.select_related("collection")
        .filter(pk=token_pk, status=Status.NEEDS_REVIEW)
        .first()
    )
    if token is None:
        return None
    last = token.attempt - 1
    if attempt is not None and attempt != last:
        log.info("%s: approval of attempt %d is stale (last attempt %d)", token, attempt, last)
        return None
    try:
        if last < 0:
            raise ReviewRefused("no attempt was rendered, so there is no image to approve")
        return _approve(token, last, approved_by)
    except (ReviewRefused, PipelineError) as exc:
        said = exc.public if isinstance(exc, PipelineError) else str(exc)
        reason = f"approval of attempt {last} by {approved_by} refused: {said}"
        if Token.objects.filter(pk=token_pk, status=Status.NEEDS_REVIEW).update(
            failure_reason=reason[:2000]
        ):
            events.record([token_pk], Status.NEEDS_REVIEW, reason)
        log.warning("%s: approval of attempt %d by %s refused: %s", token, last, approved_by, exc)
        return Status.NEEDS_REVIEW


def _approve(token: Token, attempt: int, approved_by: str) -> str | None:
    from generation import near_duplicates
    from generation.clip_gate import embedding_to_bytes

    collection = token.collection
    seed, traits, prompt = _prompt_and_traits(token)
    renderer, scorer = pipeline.load_models(collection, settings.RENDER_DEVICE)
    params = pipeline.render_params(collection, prompt)
    image = pipeline.cached_render(renderer, params, seed, attempt, _CacheOnly())
    data = _write_render(token, attempt, image)
    reasons = _gate_reasons(token.failure_reason)
    clip = dict(token.clip_scores or {})
    clip["review"] = {"decision": "approved", "reasons": reasons}
    record = pipeline.render_record(renderer, params, seed, attempt, clip, traits)
    record.update(
        approved_by=approved_by,
        approved_at=timezone.now().isoformat(),
        gate_rejection=token.failure_reason,
    )
    with transaction.atomic():
        updated = Token.objects.filter(
            pk=token.pk, status=Status.NEEDS_REVIEW, attempt=attempt + 1
        ).update(
            status=Status.RENDERED,
            attempt=attempt,
            image_sha256=hashlib.sha256(data).hexdigest(),
            clip_scores=clip,
            render_record=record,
            traits=traits,
            image_embedding=embedding_to_bytes(scorer.image_embedding(image)),
            image_signature=embedding_to_bytes(near_duplicates.signature(image)),
            failure_reason="",
        )
        if not updated:
            return None
        events.record(
            [token.pk],
            Status.RENDERED,
            f"attempt {attempt} approved by {approved_by} despite the CLIP gate"
            + (f" ({'; '.join(reasons)})" if reasons else ""),
        )
    log.info("%s: attempt %d approved by %s", token, attempt, approved_by)
    return Status.RENDERED


def _gate_reasons(failure_reason: str) -> list[str]:
    """The gate's reasons from a NEEDS_REVIEW ``failure_reason`` ("...; last: a; b")."""
    _, found, last = failure_reason.partition("last: ")
    return [r.strip() for r in last.split("; ") if r.strip()] if found else []


def _write_render(token: Token, attempt: int, image: Image.Image) -> bytes:
    """The accepted image's PNG, where the pin stage reads it."""
    from generation.rendering import png_bytes

    data = png_bytes(image)
    write_atomically(pipeline.render_cache_path(token, attempt), data)
    return data


# --------------------------------------------------------------------------------------------
# Re-render


def rerender(token_pk: int, requested_by: str, until: int) -> str | None:
    """Render attempts ``token.attempt .. until - 1`` of a NEEDS_REVIEW token through the
    unchanged gate (see the module doc); ``until`` is fixed when the manager asks, so a
    redelivered message continues the same round and never starts another.

    Returns the new status (RENDERED or NEEDS_REVIEW), or None when there is nothing to do
    (the token left review, the round is over, or its collection is paused). The actor
    (``rerender_token``) hands a RENDERED token to the pin stage.
    """

    claimable = Token.objects.filter(
        pk=token_pk,
        status__in=[Status.NEEDS_REVIEW, Status.RENDERING],
        attempt__lt=until,
    )
    if claimable.filter(collection__paused=True).exists():
        reason = f"re-render by {requested_by} not started: the collection is paused"
        if Token.objects.filter(pk=token_pk, status=Status.NEEDS_REVIEW).update(
            failure_reason=reason
        ):
            events.record([token_pk], Status.NEEDS_REVIEW, reason)
        return None
    return pipeline.run_render(token_pk, rerender_by=requested_by, until=until)
