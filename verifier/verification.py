"""Every check of one token, in order: the public-data checks, then those that need weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from verifier import checks as public
from verifier.fetching import Gateway, connect
from verifier.report import Check
from verifier.rerender import (
    CLIP_TOLERANCE,
    PIXEL_TOLERANCE,
    Models,
    Weights,
    check_clip_scores,
    check_model_fingerprint,
    check_rerender,
    require_render_extra,
)
from verifier.weights_cache import FetchWeights, check_published_weights


def resolve_weights(
    weights: Path | str | Weights | FetchWeights | None,
) -> Weights | FetchWeights | None:
    """``weights`` as :class:`Weights` (a folder with diffusion/ and clip/ is read as such),
    or :class:`FetchWeights` as given; raises ``VerifyError`` for a folder that lacks them or
    an install without the ``render`` extra."""
    if weights is None:
        return None
    require_render_extra()
    if isinstance(weights, Weights | FetchWeights):
        return weights
    return Weights.from_folder(Path(weights))


def verify_token(
    rpc_url: str,
    contract: str,
    token_id: int,
    gateway: str | Sequence[str] | Gateway,
    weights: Path | str | Weights | FetchWeights | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    pixel_tolerance: float = PIXEL_TOLERANCE,
    clip_tolerance: float = CLIP_TOLERANCE,
    models: Models | None = None,
    state: public.State | None = None,
) -> list[Check]:
    """Every check of one token, in order; raises ``VerifyError`` for unusable input.

    ``gateway``: one URL, several tried in order, or a :class:`Gateway`. ``weights``: local
    files, or :class:`FetchWeights` to fetch those the collection published from the gateway
    (the ``published_weights`` check). ``dtype`` re-renders
    in another precision than the recorded one (the distance is then measured, not bit-exact).
    ``models`` keeps loaded models between calls. ``state``, when given, is filled with what
    the checks verified (the metadata, the image bytes, the recomputed traits, the frozen
    config): what the collection audit reads.
    """
    resolved = resolve_weights(weights)
    w3, bound, chain_id = connect(rpc_url, contract)
    if not isinstance(gateway, Gateway):
        gateway = Gateway(gateway)
    models = models or Models()
    state = state or public.State(token_id=token_id)
    state.token_id, state.chain_id = token_id, chain_id
    state.collection_name = bound.functions.name().call()
    checks = [
        public.check_mint_block(w3, bound, state),
        public.check_seed(bound, state),
        public.check_metadata_digest(bound, gateway, state),
        public.check_metadata_record(bound, state),
        public.check_metadata_canonical(state),
    ]
    # run before the image's check, which rebuilds the image CID with the frozen CID profile
    config_digest = public.check_config_digest(bound, gateway, state)
    checks += [
        public.check_image(gateway, state),
        public.check_provenance(w3, bound, state),
        config_digest,
        public.check_traits(bound, state),
        public.check_render_params(state),
        public.check_clip_thresholds(state),
    ]
    fetch = resolved if isinstance(resolved, FetchWeights) else None
    if fetch is not None:  # the fetch is a check of its own, listed only when asked for
        published, resolved = check_published_weights(fetch, gateway, state)
        checks.append(published)
        state.extra["weights"] = resolved
    assert not isinstance(resolved, FetchWeights)
    return [
        *checks,
        check_model_fingerprint(resolved, state),
        check_rerender(
            resolved, state, device=device, dtype=dtype, tolerance=pixel_tolerance, models=models
        ),
        check_clip_scores(resolved, state, device=device, tolerance=clip_tolerance, models=models),
    ]
