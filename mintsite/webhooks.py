"""Webhooks: from a token's events to signed POSTs, retried with backoff and logged.

:func:`on_events` is subscribed to ``generation.events`` (``MintsiteConfig.ready``): for each
event that a collection's active subscription wants, it stores one :class:`WebhookDelivery` with
the exact body to send, and queues ``deliver_webhook`` (the ``webhooks`` queue, its own worker).
The pipeline step that caused the event is never held up: the subscriber runs after its commit,
and a failure here is logged and leaves the delivery pending (``enqueue_overdue`` sends it later).

:func:`attempt_delivery` makes one try: it claims the try with a conditional UPDATE (so a
duplicate message never sends twice at once), signs the body with a fresh timestamp in the
subscription's scheme (``Mint-Signature: t=…,v1=…``, see mintsite/webhook_signature.py; or
Standard Webhooks' ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``, signed by
the ``standardwebhooks`` library, the delivery's id as ``webhook-id``), POSTs it, logs the
answer as a :class:`WebhookAttempt`, and either marks the delivery delivered (any 2xx),
schedules the next try ``WEBHOOK_RETRY_BASE × 2^(tries-1)`` seconds later (capped at
``WEBHOOK_RETRY_MAX``), or marks it failed after ``WEBHOOK_MAX_ATTEMPTS`` tries. The POST goes
through mintsite/egress.py (public addresses and allowed ports only, checked at connect time,
the whole try ended by ``WEBHOOK_TIMEOUT``); only the status code and the timing are kept, never
the body, and a failure is recorded in our own words (the detail goes to the worker's log).

The circuit breaker: each failed try extends the subscription's streak, a success ends it; once
``WEBHOOK_BREAKER_FAILURES`` tries in a row have failed over at least ``WEBHOOK_BREAKER_SECONDS``
the endpoint is disabled (why and when stored). A disabled endpoint is sent nothing: its pending
deliveries, and those made while it stays disabled, are marked skipped; a manager re-enables it
in the admin, which sends the skipped ones again (:func:`reenable`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import standardwebhooks
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from generation.models import Token, TokenEvent
from generation.stages import WEBHOOK_QUEUE, send_by_name
from mintsite import egress, webhook_signature
from mintsite.models import (
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    WebhookScheme,
    WebhookSubscription,
)

log = logging.getLogger(__name__)
Status = Token.Status
Delivery = WebhookDelivery.Status

_SPECIFIC = {
    Status.PUBLISHED: EventType.PUBLISHED,
    Status.FAILED: EventType.FAILED,
    Status.NEEDS_REVIEW: EventType.NEEDS_REVIEW,
}
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
                    # recorded, not sent, while the circuit breaker holds the endpoint disabled
                    **(
                        {"status": Delivery.SKIPPED, "next_attempt_at": None}
                        if s.disabled_at is not None
                        else {}
                    ),
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
        send_by_name(DELIVER_ACTOR, WEBHOOK_QUEUE, (pk,), delay_ms=delay_ms)


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


@dataclass(frozen=True)
class Outcome:
    """What one POST came to: the receiver's status code, or why there was none, and how long
    it took. ``error`` is empty for a 2xx and otherwise in our words, never the receiver's."""

    status_code: int | None
    error: str
    duration_ms: int


def _post(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """One POST, ended by ``WEBHOOK_TIMEOUT`` in all. The body of the answer is never read."""
    seconds = settings.WEBHOOK_TIMEOUT
    began = time.monotonic()
    code: int | None = None
    error = ""
    problem = egress.url_problem(url, egress.Policy.from_settings(), resolve_host=False)
    if problem:
        error = f"refused: {problem}"
    else:
        try:
            with (
                egress.client(seconds) as client,
                client.stream("POST", url, content=body, headers=headers) as response,
            ):
                code = response.status_code
        except egress.EgressRefused as exc:
            error = f"refused: {exc}"
        except httpx.TimeoutException:
            error = f"timed out after {seconds:g} s"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: Django took it, httpx not
            error = _failure(exc)
            log.info("webhook POST to %s failed: %r", url, exc)
    if code is not None and not 200 <= code < 300:
        error = f"the receiver answered HTTP {code}"
    return Outcome(code, error, int((time.monotonic() - began) * 1000))


def _failure(exc: Exception) -> str:
    """A failed POST in our words: an httpx error's text may quote the receiver's bytes."""
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return f"the URL cannot be delivered to ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        if str(exc).startswith(egress.UNRESOLVED):
            return "could not resolve the receiver's name"
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return "the receiver's TLS certificate was not accepted"
        return "could not connect to the receiver"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the receiver's answer was not valid HTTP"
    if isinstance(exc, httpx.TransportError):
        return "the connection failed during the request"
    return f"the request failed ({type(exc).__name__})"


def message_id(delivery: WebhookDelivery) -> str:
    """The Standard Webhooks ``webhook-id``: the delivery's, so every try and replay of one
    delivery carries the same id (receivers dedupe on it) and two subscriptions never share one."""
    return f"msg_{delivery.pk}"


def standard_signature_headers(
    message: str, body: bytes, secret: str, at: datetime | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers of ``body`` sent as ``message`` at ``at`` (default: now),
    signed by the reference library: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``
    keyed with the base64-decoded ``whsec_`` secret."""
    at = at or timezone.now()
    return {
        "webhook-id": message,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": standardwebhooks.Webhook(secret).sign(message, at, body),
    }


def headers_for(
    delivery: WebhookDelivery, number: int, body: bytes, subscription: WebhookSubscription
) -> dict[str, str]:
    """The headers of one try, signed anew (a fresh timestamp) in the subscription's scheme."""
    if subscription.scheme == WebhookScheme.STANDARD:
        signed = standard_signature_headers(message_id(delivery), body, subscription.secret)
    else:
        signed = {webhook_signature.HEADER: webhook_signature.sign(body, subscription.secret)}
    return {
        "Content-Type": "application/json",
        "User-Agent": "mint-on-demand-webhooks/1",
        **signed,
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
    subscription = delivery.subscription
    if subscription.disabled_at is not None:
        WebhookDelivery.objects.filter(pk=delivery_pk, status=Delivery.PENDING).update(
            status=Delivery.SKIPPED, next_attempt_at=None
        )
        delivery.refresh_from_db()
        return delivery
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_pk, status=Delivery.PENDING, attempts=delivery.attempts
    ).update(attempts=F("attempts") + 1, next_attempt_at=None)
    if claimed != 1:
        return None
    number = delivery.attempts + 1
    if not subscription.active:
        outcome = Outcome(None, "not sent: the subscription is inactive", 0)
    else:
        body = bytes(delivery.payload)
        outcome = _post(subscription.url, body, headers_for(delivery, number, body, subscription))
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=number,
        status_code=outcome.status_code,
        error=outcome.error,
        duration_ms=outcome.duration_ms,
    )
    finished = timezone.now()
    changes: dict[str, Any] = {
        "last_status_code": outcome.status_code,
        "last_duration_ms": outcome.duration_ms,
        "last_error": outcome.error,
    }
    if not outcome.error:
        changes.update(status=Delivery.DELIVERED, delivered_at=finished)
    elif number >= delivery.attempt_limit or not subscription.active:
        changes.update(status=Delivery.FAILED)
    else:
        changes.update(next_attempt_at=finished + timedelta(seconds=backoff(number)))
    WebhookDelivery.objects.filter(pk=delivery_pk).update(**changes)
    if subscription.active:
        _count_for_breaker(subscription.pk, outcome.error, finished)
    log.info(
        "webhook %s %s → %s: try %d: %s",
        delivery.event_type,
        delivery.event_id,
        subscription.url,
        number,
        outcome.error or f"HTTP {outcome.status_code}",
    )
    delivery.refresh_from_db()
    return delivery


def _count_for_breaker(subscription_pk: int, error: str, now: datetime) -> None:
    """Extend or end the subscription's streak of failed tries; disable it once the streak is
    both long (``WEBHOOK_BREAKER_FAILURES``) and old (``WEBHOOK_BREAKER_SECONDS``)."""
    rows = WebhookSubscription.objects.filter(pk=subscription_pk)
    if not error:
        rows.filter(failure_streak__gt=0).update(failure_streak=0, failing_since=None)
        return
    rows.update(
        failure_streak=F("failure_streak") + 1, failing_since=Coalesce("failing_since", now)
    )
    since = now - timedelta(seconds=settings.WEBHOOK_BREAKER_SECONDS)
    with transaction.atomic():
        subscription = (
            rows.select_for_update()
            .filter(
                disabled_at=None,
                failure_streak__gte=settings.WEBHOOK_BREAKER_FAILURES,
                failing_since__lte=since,
            )
            .first()
        )
        if subscription is None:
            return
        assert subscription.failing_since is not None
        reason = (
            f"{subscription.failure_streak} tries in a row failed since "
            f"{subscription.failing_since:%Y-%m-%d %H:%M:%S} UTC; the last: {error}"
        )[:300]
        rows.update(disabled_at=now, disabled_reason=reason)
        skipped = subscription.deliveries.filter(status=Delivery.PENDING).update(
            status=Delivery.SKIPPED, next_attempt_at=None
        )
    log.warning(
        "webhook endpoint %s disabled (%s); %d pending deliveries skipped",
        subscription.url,
        reason,
        skipped,
    )


def reenable(subscription_pk: int) -> int:
    """A manager's re-enabling of an endpoint the breaker disabled: its streak starts afresh and
    the deliveries skipped meanwhile are sent again (each with the full retry budget). Returns
    how many were queued."""
    WebhookSubscription.objects.filter(pk=subscription_pk).update(
        disabled_at=None, disabled_reason="", failure_streak=0, failing_since=None
    )
    skipped = list(
        WebhookDelivery.objects.filter(subscription_id=subscription_pk, status=Delivery.SKIPPED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for pk in skipped:
        replay(pk)
    return len(skipped)


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
