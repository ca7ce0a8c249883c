"""Dramatiq middleware: a render worker loads its models and renders once before it takes work.

Each worker process keeps the models it has loaded (``get_renderer``/``get_scorer``: the warm
pool, generation/model_pool.py; all of them unless ``RENDER_MODEL_MEMORY_MB`` limits it), so
only the first token would pay for loading and for first-call costs; doing it at boot moves
that out of the first token's latency and logs the cold-start figures. With a budget smaller
than every collection's models, the last collections warmed are the ones kept.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dramatiq

log = logging.getLogger(__name__)


class WarmUpRenderers(dramatiq.Middleware):
    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        queues = getattr(worker, "consumer_whitelist", None)
        # imported here: the broker loads this middleware while Django sets its apps up
        from generation.stages import RENDER_QUEUE

        if queues and RENDER_QUEUE not in queues:
            return  # an io-only worker renders nothing
        warm_up_all()


def warm_up_all() -> list[dict[str, Any]]:
    """Load and exercise the models of every collection; return the figures logged."""
    from django.conf import settings
    from django.db import close_old_connections

    from generation.models import Collection
    from generation.pipeline import load_models, render_params

    figures = []
    try:
        collections = list(Collection.objects.all())
    finally:
        close_old_connections()
    for collection in collections:
        started = time.perf_counter()
        try:
            renderer, scorer = load_models(collection, settings.RENDER_DEVICE)
            loaded = time.perf_counter() - started
            params = render_params(collection, collection.style_prompt)
            first = renderer.warm_up(params)
            steady = renderer.warm_up(params)
            scorer.text_embeddings([collection.style_prompt])
        except (
            Exception
        ) as exc:  # a broken collection fails its tokens with a reason, not the worker
            log.warning("could not warm up %s: %s: %s", collection.slug, type(exc).__name__, exc)
            continue
        figure = {
            "collection": collection.slug,
            "load_s": round(loaded, 3),
            "first_render_s": round(first, 3),
            "steady_render_s": round(steady, 3),
            "device": renderer.device,
        }
        figures.append(figure)
        log.info(
            "warm: %s models loaded in %.2f s on %s (%s, attention %s%s, levers: %s); first "
            "render %.2f s, steady %.2f s",
            collection.slug, loaded, renderer.device, str(renderer.dtype).removeprefix("torch."),
            renderer.attention, ", compiled UNet" if renderer.compiled else "",
            renderer.levers.describe(), first, steady,
        )  # fmt: skip
    return figures
