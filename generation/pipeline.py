"""The stages after a seed is committed, as plain functions the actors in tasks.py call.

Each stage claims the token with a conditional UPDATE on its status, so a redelivered message
finds nothing to do, and each writes its result only while the token is still where the stage
left it. Expected failures raise ``PipelineError`` and end the token FAILED with the reason;
nothing is pinned or published for it.

A render also holds a lease on its token (``render_lease_owner``/``render_lease_expires``,
``RENDER_LEASE_SECONDS``, renewed before each attempt, on the database's clock so many machines
agree): Dramatiq may deliver a render twice at once (a redelivery after a missed heartbeat, a
worker found dead that was not), and the second delivery then stands down
(``RenderLeaseHeld``) instead of rendering beside the first. A worker killed mid-render leaves
its lease to lapse, and the next delivery takes the token over. A run whose lease was taken
over writes nothing: each of its UPDATEs names its lease.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from foundation.files import write_atomically
from generation import events, stages
from generation.canonical import canonical_json
from generation.errors import (
    ModelReferenceError,
    PinFailed,
    PipelineError,
    RenderFailed,
    RenderLeaseHeld,
    TraitsNotReady,
)
from generation.metadata import build_metadata, software_versions
from generation.models import Collection, Token, seed_bytes
from generation.pin_ledger import pin_bytes
from generation.protocols import RendersImages
from generation.render_levers import LEVER_FIELDS
from ipfs.cid import compute_raw_cid
from ipfs.errors import CidMismatch, ContentTooLarge, PinningError, QuorumNotReached

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from generation.clip_gate import ClipScorer, GateResult, TraitCheck
    from generation.protocols import ImageRenderer, ImageScorer, RenderIdentity
    from generation.rendering import Renderer, RenderParams
    from generation.uniqueness import SignatureDistances

log = logging.getLogger(__name__)
Status = Token.Status


def _new_lease_owner() -> str:
    """Who renders: host, process and thread (what an operator looks for), and a nonce, since
    one thread may render the same token twice in a row."""
    name = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"
    return name[-100:]


def _lease_until() -> ExpressionWrapper:
    """Now plus the lease, on the database's clock."""
    return ExpressionWrapper(
        Now() + timedelta(seconds=settings.RENDER_LEASE_SECONDS), output_field=DateTimeField()
    )


def lease_free() -> Q:
    """A token no live render holds: not RENDERING, or RENDERING with a lapsed or no lease."""
    return (
        ~Q(status=Status.RENDERING)
        | Q(render_lease_expires__isnull=True)
        | Q(render_lease_expires__lt=Now())
    )


def _renew_lease(token_pk: int, owner: str) -> bool:
    """Extend this run's lease; False when it was taken over (this run must stand down)."""
    return bool(
        Token.objects.filter(pk=token_pk, status=Status.RENDERING, render_lease_owner=owner).update(
            render_lease_expires=_lease_until()
        )
    )


def _release_lease(token_pk: int, owner: str) -> None:
    """Give the lease up at once (the run failed): the retry takes the token without waiting."""
    Token.objects.filter(pk=token_pk, status=Status.RENDERING, render_lease_owner=owner).update(
        render_lease_owner="", render_lease_expires=None
    )


def _lease_holder(token_pk: int) -> tuple[str, float] | None:
    """(owner, seconds left) of a live lease on the token, if one holds it."""
    row = (
        Token.objects.filter(pk=token_pk, status=Status.RENDERING, render_lease_expires__gte=Now())
        .annotate(db_now=Now())
        .values_list("render_lease_owner", "render_lease_expires", "db_now")
        .first()
    )
    if row is None:
        return None
    owner, expires, now = row
    return owner, max((expires - now).total_seconds(), 0.0)


def traits_for(token: Token, seed: bytes) -> dict[str, str]:
    """The token's traits: a pure function of its seed (weighted) or of the seeds of tokens
    1..k in token-id order (quota), and the collection's frozen rarity table."""
    from generation.traits import token_traits, weighted_traits

    table = token.collection.rarity
    mode = table.get("mode", "none")
    if mode == "none":
        return {}
    if mode == "weighted":
        return weighted_traits(seed, table)
    k = token.token_id
    earlier = list(
        Token.objects.filter(collection=token.collection_id, token_id__lt=k)
        .exclude(status=Status.REORGED)
        .order_by("token_id")
        .values_list("token_id", "seed")
    )
    ready = [s for t, s in earlier if s]
    if len(earlier) != k - 1 or len(ready) != k - 1:
        raise TraitsNotReady(
            f"quota mode: token {k} waits for the seeds of tokens 1..{k - 1} "
            f"({k - 1 - len(ready)} not committed yet)"
        )
    seeds = [seed_bytes(s) for s in ready] + [seed]
    return token_traits(k, seeds, table)


def mark_failed(token_pk: int, reason: str, *, detail: str = "") -> bool:
    """FAILED with ``reason`` (public), unless the token is already published or final;
    ``detail``, what only the operator may read, goes to the log alone."""
    updated = (
        Token.objects.filter(pk=token_pk)
        .exclude(status__in=[Status.PUBLISHED, Status.FINAL, Status.REORGED])
        .update(status=Status.FAILED, failure_reason=reason[:2000])
    )
    if updated:
        if detail and detail != reason:
            log.error("token pk=%d FAILED: %s (in full: %s)", token_pk, reason, detail)
        else:
            log.error("token pk=%d FAILED: %s", token_pk, reason)
        events.record([token_pk], Status.FAILED, reason)
    return bool(updated)


def fail_pipeline(token_pk: int, exc: PipelineError) -> bool:
    """FAILED for a failure retrying will not fix: its public wording, its message logged."""
    return mark_failed(token_pk, exc.public, detail=str(exc))


def _pinning_refused(exc: PinningError) -> str:
    """A backend's refusal in our words: its message quotes the service and its answer."""
    if isinstance(exc, CidMismatch):
        return str(exc)  # CIDs and the backend's kind only, and what to check
    if isinstance(exc, QuorumNotReached):  # target names and error kinds, no URLs
        reasons = ", ".join(f"{name}: {type(e).__name__}" for name, e in exc.failed.items())
        return (
            f"held by {len(exc.held)} IPFS target(s), fewer than IPFS_PIN_QUORUM={exc.quorum} "
            f"({reasons})"
        )
    return f"the IPFS backend refused to pin it: {type(exc).__name__}"


def render_cache_path(token: Token, attempt: int) -> Path:
    return (
        Path(settings.RENDER_CACHE_DIR) / token.collection.slug / f"{token.token_id}-{attempt}.png"
    )


def load_models(collection: Collection, device: str | None) -> tuple[Renderer, ClipScorer]:
    """This process's renderer and CLIP scorer for the collection (loaded once, kept warm);
    a model that cannot load raises ``RenderFailed`` naming it."""
    from generation.clip_gate import get_scorer
    from generation.rendering import get_renderer

    try:
        renderer = get_renderer(
            collection.model_path(), device, collection.model_config_path(), collection.levers()
        )
    except ModelReferenceError as exc:
        if exc.field not in LEVER_FIELDS:
            raise _model_failed(collection, exc) from exc
        # a lever this worker cannot honour (int8 on a GPU, a damaged adapter): named by field
        raise RenderFailed(
            f"{exc.field}: {exc}",
            public=f"{exc.field}: cannot be used by this render worker (see the worker's log)",
        ) from exc
    except Exception as exc:  # diffusers raises many kinds for a missing or corrupt model
        raise _model_failed(collection, exc) from exc
    try:
        scorer = get_scorer(collection.clip_path(), device)
    except Exception as exc:  # open_clip, likewise
        raise RenderFailed(
            f"cannot load the CLIP model at {collection.clip_path()}: {type(exc).__name__}: {exc}",
            public=f"cannot load the CLIP model (clip_dir): {type(exc).__name__}",
        ) from exc
    return renderer, scorer


def _model_failed(collection: Collection, exc: Exception) -> RenderFailed:
    return RenderFailed(
        f"cannot load the diffusion model at {collection.model_path()}: "
        f"{type(exc).__name__}: {exc}",
        public=f"cannot load the diffusion model (model_dir): {type(exc).__name__}",
    )


def render_params(collection: Collection, prompt: str) -> RenderParams:
    """The collection's render settings for one prompt."""
    from generation.rendering import RenderParams

    return RenderParams(
        prompt=prompt,
        negative_prompt=collection.negative_prompt,
        steps=collection.steps,
        guidance=collection.guidance,
        width=collection.width,
        height=collection.height,
        scheduler=collection.scheduler,
    )


def trait_checks_for(collection: Collection, traits: dict[str, str]) -> list[TraitCheck]:
    """What the gate verifies: each ``verify: true`` category's assigned option among its own."""
    from generation.clip_gate import TraitCheck

    return [
        TraitCheck(
            category["name"],
            traits[category["name"]],
            {option["name"]: option["prompt"] for option in category["options"]},
        )
        for category in collection.rarity.get("categories", [])
        if category.get("verify")
    ]


_style_references: dict[tuple[object, ...], np.ndarray] = {}


def _style_reference(scorer: ImageScorer, paths: list[Path]) -> np.ndarray:
    """The reference images' mean embedding, computed once per process and set of files."""
    from generation.clip_gate import reference_embedding

    key = (scorer.fingerprint, *((str(p), p.stat().st_mtime_ns) for p in paths))
    if key not in _style_references:
        _style_references[key] = reference_embedding(scorer, paths)
    return _style_references[key]


def cached_render(
    renderer: RenderIdentity,
    params: RenderParams,
    seed: bytes,
    attempt: int,
    batcher: RendersImages | None = None,
) -> Image.Image:
    """Render, or reuse the finished render with exactly the same inputs.

    The key is the sha256 of every input that shapes the pixels (model fingerprint, dtype,
    device, prompt, negative prompt, steps, guidance, size, generator seed), so a redelivered
    message or a retry after a worker crash never renders twice.
    """
    from PIL import Image

    from generation.render_seed import torch_seed_for
    from generation.rendering import png_bytes

    key = hashlib.sha256(
        canonical_json(
            {
                "model": renderer.fingerprint,
                "scheduler": renderer.scheduler_for(params),
                "dtype": str(renderer.dtype),
                "device": renderer.device,
                "prompt": params.prompt,
                "negative_prompt": params.negative_prompt,
                "steps": params.steps,
                "guidance": params.guidance,
                "size": [params.width, params.height],
                "torch_seed": torch_seed_for(seed, attempt),
                # only when a lever is pulled, so the keys of earlier renders still match
                **({"levers": renderer.lever_record} if renderer.lever_record else {}),
            }
        )
    ).hexdigest()
    path = Path(settings.RENDER_CACHE_DIR) / "by-inputs" / f"{key}.png"
    if path.exists():
        with Image.open(path) as cached:
            return cached.convert("RGB")
    source = batcher if batcher is not None else renderer
    if not isinstance(source, RendersImages):  # a weightless key looks up, never renders
        raise TypeError(f"{renderer!r} cannot render; pass what renders as batcher")
    image = source.render(params, seed, attempt)
    # two renders of the same inputs may finish side by side: each writes whole
    write_atomically(path, png_bytes(image))
    return image


def run_render(
    token_pk: int, *, rerender_by: str | None = None, until: int | None = None
) -> str | None:
    """Render and CLIP-check a token, re-rendering with attempt+1 while the gate rejects it,
    up to the collection's ``max_attempts``.

    With ``rerender_by`` (a manager's re-render of a NEEDS_REVIEW token, see
    generation/review.py) the attempts go on from where they stopped up to ``until``, through
    the same gate, and the record says who asked. Returns the token's new status, or None when
    there is nothing to do (another delivery has it, its attempts are used up, its
    collection is paused: ``resume()`` re-sends, or this run's lease was taken over). Raises
    ``RenderLeaseHeld`` when a live run holds the token (see the module doc).
    """
    if rerender_by is None:
        renderable = [Status.SEED_COMMITTED, Status.RENDERING]
    else:
        renderable = [Status.NEEDS_REVIEW, Status.RENDERING]
    token = (
        Token.objects.select_related("collection")
        .filter(pk=token_pk, status__in=renderable, collection__paused=False)
        .first()
    )
    if token is None:
        return None
    collection = token.collection
    limit = until if until is not None else collection.max_attempts
    first = token.attempt
    if first >= limit:
        return None  # this round's attempts are used up (a redelivered or stray message)
    seed = token.seed_bytes
    try:
        traits = traits_for(token, seed)  # TraitsNotReady (quota mode) leaves it as it is
    except ValueError as exc:
        raise RenderFailed(f"traits cannot be drawn: {exc}") from exc
    owner = _new_lease_owner()
    with transaction.atomic():  # one commit for the claim and its event
        _relaxed_commit()
        claimed = Token.objects.filter(
            lease_free(), pk=token_pk, status__in=renderable, attempt__lt=limit
        ).update(
            status=Status.RENDERING, render_lease_owner=owner, render_lease_expires=_lease_until()
        )
        if claimed == 1:
            if rerender_by is None:
                detail = f"attempt {first}"
            else:
                detail = f"re-render by {rerender_by}: attempts {first}..{limit - 1}"
            if token.status == Status.RENDERING and token.render_lease_owner:
                detail += f" (taken over from {token.render_lease_owner}, whose lease lapsed)"
            events.record([token_pk], Status.RENDERING, detail)
    if claimed != 1:
        holder = _lease_holder(token_pk)
        if holder is not None:
            raise RenderLeaseHeld(token_pk, *holder)
        return None
    try:
        return _render_claimed(token, owner, traits, first, limit, rerender_by)
    except BaseException:
        # a failed try frees the token for its retry at once; a killed worker cannot, and its
        # lease lapses instead
        _release_lease(token_pk, owner)
        raise


def _render_claimed(
    token: Token,
    owner: str,
    traits: dict[str, str],
    first: int,
    limit: int,
    rerender_by: str | None,
) -> str | None:
    """The attempts of a claimed render (see ``run_render``); every write names ``owner``."""
    from generation.clip_gate import check_image, embedding_to_bytes
    from generation.rendering import png_bytes
    from generation.traits import render_prompt

    token_pk, collection = token.pk, token.collection
    seed = token.seed_bytes
    mine = Token.objects.filter(pk=token_pk, status=Status.RENDERING, render_lease_owner=owner)
    try:
        prompt = render_prompt(
            collection.prompt_template,
            traits,
            collection.rarity,
            token_id=token.token_id,
            collection=collection.name,
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise RenderFailed(f"prompt template cannot be filled: {exc!r}") from exc
    renderer, scorer = load_models(collection, settings.RENDER_DEVICE)
    batcher = None
    if settings.RENDER_BATCH_SIZE > 1:
        from generation.batching import get_batcher

        batcher = get_batcher(
            collection.model_path(),
            settings.RENDER_DEVICE,
            config_dir=collection.model_config_path(),
            max_batch=settings.RENDER_BATCH_SIZE,
            max_wait=settings.RENDER_BATCH_WAIT,
            renderer=renderer,
        )

    params = render_params(collection, prompt)
    trait_checks = trait_checks_for(collection, traits)
    checks_uniqueness = (
        collection.uniqueness_threshold is not None
        or collection.near_duplicate_threshold is not None
    )
    style_reference = None
    if collection.style_images:
        try:
            style_reference = _style_reference(scorer, collection.style_image_paths())
        except OSError as exc:
            raise RenderFailed(
                f"the collection's style images cannot be read: {exc}",
                public=f"the collection's style images cannot be read: {type(exc).__name__}",
            ) from exc
    reasons: list[str] = []
    for attempt in range(first, limit):
        # the claim has just taken the lease for the first attempt: one commit less per token
        if attempt > first and not _renew_lease(token_pk, owner):
            log.warning("%s: lease taken over before attempt %d; standing down", token, attempt)
            return None
        began = time.perf_counter()
        try:
            image = cached_render(renderer, params, seed, attempt, batcher)
        except (RuntimeError, ValueError) as exc:
            raise RenderFailed(
                f"rendering failed: {type(exc).__name__}: {exc}",
                public=f"rendering failed: {type(exc).__name__}",
            ) from exc
        log.info("%s attempt %d rendered in %.2f s", token, attempt, time.perf_counter() - began)
        gate = check_image(
            scorer,
            image,
            collection.style_prompt,
            collection.clip_threshold,
            traits=trait_checks,
            trait_margin=collection.trait_margin,
            style_reference=style_reference,
            style_reference_threshold=collection.style_images_threshold,
        )
        clip = {
            "model_fingerprint": scorer.fingerprint,
            "scores": gate.scores,
            "thresholds": gate.thresholds,
        }
        if gate.passed and (gate.embedding is None or gate.signature is None):
            # a passing gate has always embedded the image
            raise RenderFailed("the CLIP gate passed the image without its embedding")
        distances = None
        if collection.near_duplicate_threshold is not None:
            from generation.uniqueness import SignatureDistances, index_for

            # compared with every token accepted so far here, outside the lock; under it, only
            # with those accepted in the meantime
            distances = SignatureDistances(
                index_for(collection.pk, "image_signature"), token_pk, image
            )
            distances.update()
        if not gate.passed and checks_uniqueness:
            # rejected already: the uniqueness verdict is only reported, no lock needed
            _check_unique(gate, image, collection, token_pk, distances)
        data = png_bytes(image) if gate.passed else b""
        if gate.passed:
            write_atomically(render_cache_path(token, attempt), data)
        with transaction.atomic():
            if gate.passed and checks_uniqueness:
                # The collection's lock admits one accepting render at a time per collection,
                # so an image accepted a moment ago by another worker or batch is in the lists
                # read below (on SQLite the IMMEDIATE transaction mode has already taken the
                # database's write lock, which does the same).
                Collection.objects.select_for_update(no_key=True).filter(pk=collection.pk).first()
                _check_unique(gate, image, collection, token_pk, distances)
            if gate.passed and gate.embedding is not None and gate.signature is not None:
                detail = f"attempt {attempt} passed the CLIP gate"
                if rerender_by is not None:
                    clip["review"] = {"decision": "re-rendered", "earlier_attempts": first}
                    detail += f" (re-render by {rerender_by})"
                record = render_record(renderer, params, seed, attempt, clip, traits)
                if rerender_by is not None:
                    record["rerendered_by"] = rerender_by
                done = mine.update(
                    status=Status.RENDERED,
                    render_lease_owner="",
                    render_lease_expires=None,
                    attempt=attempt,
                    image_sha256=hashlib.sha256(data).hexdigest(),
                    clip_scores=clip,
                    render_record=record,
                    traits=traits,
                    image_embedding=embedding_to_bytes(gate.embedding),
                    image_signature=embedding_to_bytes(gate.signature),
                    failure_reason="",
                )
                if done:
                    events.record([token_pk], Status.RENDERED, detail)
                accepted = True
            else:
                reasons = gate.reasons
                log.info("%s attempt %d rejected by the CLIP gate: %s", token, attempt, reasons)
                _relaxed_commit()
                done = mine.update(attempt=attempt + 1, clip_scores=clip)
                if done:
                    detail = f"attempt {attempt} rejected by the CLIP gate: " + "; ".join(reasons)
                    events.record([token_pk], Status.RENDERING, detail)
                accepted = False
        if accepted:
            return Status.RENDERED if done else _moved_while_rendering(token_pk)
        if not done:
            log.warning("%s: lease taken over during attempt %d", token, attempt)
            return _moved_while_rendering(token_pk)
    if rerender_by is None:
        reason = f"CLIP gate rejected all {collection.max_attempts} attempts; last: "
    else:
        reason = (
            f"CLIP gate rejected the {limit - first} attempts of the re-render by "
            f"{rerender_by}; last: "
        )
    reason += "; ".join(reasons)
    with transaction.atomic():
        done = mine.update(
            status=Status.NEEDS_REVIEW,
            failure_reason=reason,
            render_lease_owner="",
            render_lease_expires=None,
        )
        if done:
            events.record([token_pk], Status.NEEDS_REVIEW, reason)
    return Status.NEEDS_REVIEW if done else _moved_while_rendering(token_pk)


def _check_unique(
    gate: GateResult,
    image: Image.Image,
    collection: Collection,
    pk: int,
    distances: SignatureDistances | None,
) -> None:
    """Add the uniqueness checks to ``gate``, against the collection's tokens accepted so far
    (read now, every token but ``pk``); ``distances`` is the image's ``SignatureDistances``
    (None when the collection does not check near duplicates)."""
    from generation.clip_gate import check_uniqueness
    from generation.uniqueness import index_for

    earlier = None
    if collection.uniqueness_threshold is not None:
        earlier = index_for(collection.pk, "image_embedding").earlier(pk)
    if distances is not None:
        distances.update()
    check_uniqueness(
        gate,
        image,
        earlier=earlier,
        uniqueness_threshold=collection.uniqueness_threshold,
        near_duplicate_threshold=collection.near_duplicate_threshold,
        near_duplicate_min=distances.nearest() if distances is not None else None,
    )


def _moved_while_rendering(token_pk: int) -> str | None:
    """The token left this run while it rendered. Back at a status that renders again (its
    claim was lost, or a manager sent it back), raise so the message is retried and finds it;
    anywhere else (another run's lease included), someone else has it: nothing to do (None,
    what ``run_render`` returns for it)."""
    status = Token.objects.filter(pk=token_pk).values_list("status", flat=True).first()
    if status in (Status.SEED_COMMITTED, Status.NEEDS_REVIEW):
        raise RuntimeError(f"token pk={token_pk} went back to {status} while rendering; retrying")
    return None


def _relaxed_commit() -> None:
    """Let PostgreSQL acknowledge this transaction's commit before it reaches the disk.

    Only for writes whose loss in a database crash is harmless: a render's claim (lost, the
    token is back at SEED_COMMITTED, which the redelivered message renders again) and a
    rejected attempt's counter (lost, that attempt is redone from the render cache). The result
    of a stage is always committed durably. Saves one disk flush per token (about 4 ms on the
    benchmark machine).
    """
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def render_record(
    renderer: ImageRenderer,
    params: RenderParams,
    seed: bytes,
    attempt: int,
    clip: dict[str, Any],
    traits: dict[str, str],
) -> dict[str, Any]:
    """Every parameter that shaped an accepted image: the token's ``render_record``, which
    goes into its metadata's provenance."""
    from generation.render_seed import torch_seed_for

    return {
        "attempt": attempt,
        "torch_seed": torch_seed_for(seed, attempt),
        "model": {
            "fingerprint": renderer.fingerprint,
            "format": renderer.format,
            "scheduler": renderer.scheduler_for(params),
            # A verifier re-rendering on another machine needs these: float16 on CUDA and
            # float32 anywhere render visibly different images from the same seed.
            "dtype": str(renderer.dtype).removeprefix("torch."),
            "device": renderer.device,
            # the latency levers in use (adapters, int8, ONNX, the student's teacher)
            **renderer.lever_record,
        },
        "render": {
            "prompt": params.prompt,
            "negative_prompt": params.negative_prompt,
            "steps": params.steps,
            "guidance": params.guidance,
            "width": params.width,
            "height": params.height,
        },
        "clip": clip,
        "traits": traits,
        "software": software_versions(),
    }


def run_pin(token_pk: int) -> str | None:
    """Pin the image, then the metadata naming it, on the configured IPFS targets
    (``IPFS_TARGETS``, else ``IPFS_BACKEND``) under the collection's CID profile; every CID a
    backend returns is checked against the one computed here from the bytes. The token is
    PINNED once ``IPFS_PIN_QUORUM`` targets hold both; a mismatch at a lone target (or too few
    targets, none of them retryable) fails the token: nothing is published for it."""

    token = (
        Token.objects.select_related("collection")
        .filter(pk=token_pk, status=Status.RENDERED)
        .first()
    )
    if token is None:
        return None
    path = render_cache_path(token, token.attempt)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PinFailed(
            f"the rendered image {path} cannot be read: {exc}",
            public=f"the rendered image cannot be read: {type(exc).__name__}",
        ) from exc
    if hashlib.sha256(data).hexdigest() != token.image_sha256:
        raise PinFailed(
            f"the rendered image {path} does not hash to {token.image_sha256}",
            public=f"the rendered image does not hash to {token.image_sha256}",
        )
    name = f"{token.collection.slug}-{token.token_id}"
    try:
        collection = token.collection
        profile = collection.ipfs_profile()
        # on each IPFS target, done when IPFS_PIN_QUORUM hold it (generation/pin_ledger.py)
        image_cid = pin_bytes(data, name=f"{name}.png", profile=profile, collection=collection)
        metadata = canonical_json(build_metadata(token, image_cid))
        # tokenURI names the metadata by the sha256 the contract stores: one raw block only
        compute_raw_cid(metadata)
        metadata_cid = pin_bytes(
            metadata, name=f"{name}.json", profile=profile, collection=collection
        )
    except ContentTooLarge as exc:
        raise PinFailed(f"the metadata is too large for one IPFS block: {exc}") from exc
    except PinningError as exc:
        if exc.retryable:
            raise  # Dramatiq retries the stage with backoff
        raise PinFailed(str(exc), public=_pinning_refused(exc)) from exc
    updated = Token.objects.filter(pk=token_pk, status=Status.RENDERED).update(
        status=Status.PINNED,
        image_cid=image_cid,
        metadata_cid=metadata_cid,
        metadata_sha256=hashlib.sha256(metadata).hexdigest(),
    )
    if not updated:
        return None
    events.record([token_pk], Status.PINNED, f"image {image_cid}, metadata {metadata_cid}")
    return Status.PINNED


def resume(collection_pk: int) -> dict[str, int]:
    """Send the messages a paused collection's waiting tokens need (after unpausing it): a
    render for each token waiting to render (one already rendering elsewhere finds its render
    cached), and one publishing run. Returns the counts."""
    waiting = list(
        Token.objects.filter(
            collection_id=collection_pk, status__in=[Status.SEED_COMMITTED, Status.RENDERING]
        )
        .order_by("token_id")
        .values_list("pk", flat=True)
    )
    for pk in waiting:
        stages.send(stages.RENDER, pk)
    stages.send(stages.PUBLISH, collection_pk)
    return {"renders": len(waiting), "publishing_runs": 1}
