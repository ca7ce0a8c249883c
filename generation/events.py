"""Each token's stage history, and who hears about it.

Every place that changes a token's status calls :func:`record` with the tokens that moved; the
events are written in one bulk insert, and once the surrounding database transaction commits,
every subscriber (the webhook dispatcher, registered at start-up) gets them. A subscriber's
failure is logged and never undoes or blocks the pipeline step that caused the event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from django.db import transaction
from django.utils import timezone

from generation.models import TokenEvent

log = logging.getLogger(__name__)

Subscriber = Callable[[list[TokenEvent]], None]
_subscribers: list[Subscriber] = []
_lock = threading.Lock()


def subscribe(subscriber: Subscriber) -> None:
    """Have ``subscriber`` called with each committed batch of new events (once per function)."""
    with _lock:
        if subscriber not in _subscribers:
            _subscribers.append(subscriber)


def unsubscribe(subscriber: Subscriber) -> None:
    with _lock:
        if subscriber in _subscribers:
            _subscribers.remove(subscriber)


def record(token_pks: Iterable[int], status: str, detail: str = "") -> list[TokenEvent]:
    """Write that each of ``token_pks`` entered ``status`` now (with ``detail``, the reason)."""
    at = timezone.now()
    events = [
        TokenEvent(token_id=pk, status=status, detail=detail[:2000], at=at) for pk in token_pks
    ]
    if not events:
        return []
    events = TokenEvent.objects.bulk_create(events, batch_size=2000)
    if _subscribers:
        transaction.on_commit(lambda: _notify(events))
    return events


def _notify(events: list[TokenEvent]) -> None:
    with _lock:
        subscribers = list(_subscribers)
    for subscriber in subscribers:
        try:
            subscriber(events)
        except Exception:  # a subscriber must never break the pipeline
            log.exception("event subscriber %r failed on %d event(s)", subscriber, len(events))
