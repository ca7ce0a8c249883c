"""Webhooks: from a token's events to signed POSTs, retried with backoff and logged.

:func:`on_events` is subscribed to ``generation.events`` (``MintsiteConfig.ready``): for each
event that a collection's active subscription wants, it stores one :class:`WebhookDelivery` with
the exact body to send, and queues ``deliver_webhook`` (the ``io`` queue). The pipeline step that
caused the event is never held up: the subscriber runs after its commit, and a failure here is
logged and leaves the delivery pending (``enqueue_overdue`` sends it later).

:func:`attempt_delivery` makes one try: it claims the try with a conditional UPDATE (so a
duplicate message never sends twice at once), signs the body with a fresh timestamp
(``Mint-Signature: t=…,v1=…``, see mintsite/webhook_signature.py), POSTs it, logs the answer as a
:class:`WebhookAttempt`, and either marks the delivery delivered (any 2xx), schedules the next
try ``WEBHOOK_RETRY_BASE × 2^(tries-1)`` seconds later (capped at ``WEBHOOK_RETRY_MAX``), or
marks it failed after ``WEBHOOK_MAX_ATTEMPTS`` tries.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from generation.models import Token, TokenEvent
from generation.stages import IO_QUEUE, send_by_name
from mintsite import webhook_signature
from mintsite.models import EventType, WebhookAttempt, WebhookDelivery, WebhookSubscription

log = logging.getLogger(__name__)
Status = Token.Status
Delivery = WebhookDelivery.Status

_SPECIFIC = {
    Status.PUBLISHED: EventType.PUBLISHED,
    Status.FAILED: EventType.FAILED,
    Status.NEEDS_REVIEW: EventType.NEEDS_REVIEW,
}
EXCERPT_CHARS = 1000
# A message may come a little before the time it was scheduled for (clocks of two machines).
EARLY_SLACK = timedelta(seconds=1)


def event_types_for(status: str) -> list[str]:
    """The event types a token entering ``status`` raises: always token.stage, and one more
    for PUBLISHED, FAILED and NEEDS_REVIEW."""
    types = [EventType.STAGE.value]
    if status in _SPECIFIC:
        types.append(_SPECIFIC[status].value)
    return types


def event_id(event: TokenEvent, event_type: str) -> str:
    """Stable across retries and replays, and the same for every subscription."""
    return f"evt_{event.pk}_{event_type.removeprefix('token.')}"


def payload_for(event: TokenEvent, event_type: str, token: Token) -> bytes:
    """The body of a delivery: JSON, UTF-8, keys sorted (the bytes the signature covers)."""
    from mintsite.api.documents import event_document, token_document

    body = {
        "id": event_id(event, event_type),
        "type": event_type,
        "created": event.at.isoformat(),
        "collection": token.collection.slug,
        "data": {
            "event": event_document(event),
            "token": token_document(token, history=False),
        },
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def create_deliveries(events: list[TokenEvent]) -> list[int]:
    """Store a delivery for each (event, subscription, event type) wanted; returns the pks of
    those still waiting for their first try (new ones, and any stored before and not sent)."""
    token_pks = {e.token_id for e in events}
    subscriptions = list(
        WebhookSubscription.objects.filter(active=True, collection__tokens__pk__in=token_pks)
        .distinct()
        .order_by("pk")
    )
    if not subscriptions:
        return []  # the common case costs one query
    by_collection: dict[int, list[WebhookSubscription]] = defaultdict(list)
    for subscription in subscriptions:
        by_collection[subscription.collection_id].append(subscription)
    tokens = Token.objects.select_related("collection").in_bulk(token_pks)
    rows = []
    for event in events:
        token = tokens.get(event.token_id)
        if token is None:
            continue
        for event_type in event_types_for(event.status):
            wanted = [s for s in by_collection[token.collection_id] if event_type in s.event_types]
            if not wanted:
                continue
            payload = payload_for(event, event_type, token)
            rows.extend(
                WebhookDelivery(
                    subscription=s,
                    event_id=event_id(event, event_type),
                    event_type=event_type,
                    payload=payload,
                    attempt_limit=settings.WEBHOOK_MAX_ATTEMPTS,
                )
                for s in wanted
            )
    if not rows:
        return []
    # A batch heard twice (at-least-once upstream) makes no second delivery.
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    return list(
        WebhookDelivery.objects.filter(
            subscription__in=[r.subscription for r in rows],
            event_id__in={r.event_id for r in rows},
            status=Delivery.PENDING,
            attempts=0,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


DELIVER_ACTOR = "deliver_webhook"  # mintsite/tasks.py, sent by name


def enqueue(delivery_pks: list[int], delay_ms: int = 0) -> None:
    for pk in delivery_pks:
        send_by_name(DELIVER_ACTOR, IO_QUEUE, (pk,), delay_ms=delay_ms)


def on_events(events: list[TokenEvent]) -> None:
    """The ``generation.events`` subscriber (runs after the events' transaction committed)."""
    pks = create_deliveries(events)
    if pks:
        enqueue(pks)


def enqueue_overdue(older_than: float = 60.0) -> int:
    """Queue again the pending deliveries whose try is overdue by ``older_than`` seconds (their
    message was lost, or the broker was down when they were made). Returns how many."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    pks = list(
        WebhookDelivery.objects.filter(status=Delivery.PENDING, next_attempt_at__lt=cutoff)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:1000]
    )
    enqueue(pks)
    return len(pks)


def backoff(tries: int) -> float:
    """Seconds to wait after the ``tries``-th failed try."""
    return min(settings.WEBHOOK_RETRY_BASE * 2 ** max(tries - 1, 0), settings.WEBHOOK_RETRY_MAX)


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str, str]:
    """(status code or None, start of the response body, error) of one POST."""
    try:
        with (
            httpx.Client(timeout=settings.WEBHOOK_TIMEOUT, follow_redirects=False) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            received = b""
            for chunk in response.iter_bytes():
                received += chunk
                if len(received) >= EXCERPT_CHARS * 4:
                    break  # the start is enough; never read an endless body
            excerpt = received.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
            code = response.status_code
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: a URL Django took, httpx not
        return None, "", f"{type(exc).__name__}: {exc}"[:2000]
    error = "" if 200 <= code < 300 else f"the receiver answered HTTP {code}"
    return code, excerpt, error


def headers_for(delivery: WebhookDelivery, number: int, body: bytes, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "mint-on-demand-webhooks/1",
        webhook_signature.HEADER: webhook_signature.sign(body, secret),
        "Mint-Event-Id": delivery.event_id,
        "Mint-Event-Type": delivery.event_type,
        "Mint-Delivery-Id": str(delivery.pk),
        "Mint-Delivery-Attempt": str(number),
    }


def attempt_delivery(delivery_pk: int, *, now: datetime | None = None) -> WebhookDelivery | None:
    """Make one try of a pending delivery that is due. Returns it as it is afterwards, or None
    when there was nothing to do (gone, no longer pending, not due yet, claimed by another)."""
    now = now or timezone.now()
    delivery = WebhookDelivery.objects.select_related("subscription").filter(pk=delivery_pk).first()
    if delivery is None or delivery.status != Delivery.PENDING:
        return None
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now + EARLY_SLACK:
        return None  # an early duplicate: the message scheduled for that time will come
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_pk, status=Delivery.PENDING, attempts=delivery.attempts
    ).update(attempts=F("attempts") + 1, next_attempt_at=None)
    if claimed != 1:
        return None
    number = delivery.attempts + 1
    subscription = delivery.subscription
    if not subscription.active:
        code, excerpt, error = None, "", "not sent: the subscription is inactive"
        duration_ms = 0
    else:
        body = bytes(delivery.payload)
        began = time.monotonic()
        code, excerpt, error = _post(
            subscription.url, body, headers_for(delivery, number, body, subscription.secret)
        )
        duration_ms = int((time.monotonic() - began) * 1000)
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=number,
        status_code=code,
        response=excerpt,
        error=error,
        duration_ms=duration_ms,
    )
    finished = timezone.now()
    changes: dict[str, Any] = {
        "last_status_code": code,
        "last_response": excerpt,
        "last_error": error,
    }
    if not error:
        changes.update(status=Delivery.DELIVERED, delivered_at=finished)
    elif number >= delivery.attempt_limit or not subscription.active:
        changes.update(status=Delivery.FAILED)
    else:
        changes.update(next_attempt_at=finished + timedelta(seconds=backoff(number)))
    WebhookDelivery.objects.filter(pk=delivery_pk).update(**changes)
    log.info(
        "webhook %s %s → %s: try %d: %s",
        delivery.event_type,
        delivery.event_id,
        subscription.url,
        number,
        error or f"HTTP {code}",
    )
    delivery.refresh_from_db()
    return delivery


def replay(delivery_pk: int) -> WebhookDelivery:
    """Send a delivery again (whatever became of it), with a fresh timestamp and the full
    retry budget; the log keeps every earlier try."""
    WebhookDelivery.objects.filter(pk=delivery_pk).update(
        status=Delivery.PENDING,
        next_attempt_at=timezone.now(),
        attempt_limit=F("attempts") + settings.WEBHOOK_MAX_ATTEMPTS,
    )
    enqueue([delivery_pk])
    return WebhookDelivery.objects.get(pk=delivery_pk)
