"""Dramatiq actors of the web side: webhook deliveries (thin shells over mintsite.webhooks)."""

from __future__ import annotations

import dramatiq
from django.utils import timezone

from generation.stages import WEBHOOK_QUEUE
from mintsite import webhooks
from mintsite.models import WebhookDelivery


@dramatiq.actor(
    actor_name=webhooks.DELIVER_ACTOR,
    queue_name=WEBHOOK_QUEUE,
    max_retries=3,
    min_backoff=5_000,
    max_backoff=60_000,
    # one POST, ended by WEBHOOK_TIMEOUT in all (DNS aside), and its bookkeeping
    time_limit=120_000,
)
def deliver_webhook(delivery_pk: int) -> None:
    """One try of a delivery; schedules the next one itself (a receiver's failure is not an
    error of this actor, so Dramatiq's retries are left for the unexpected: a database down)."""
    delivery = webhooks.attempt_delivery(delivery_pk)
    if (
        delivery is not None
        and delivery.status == WebhookDelivery.Status.PENDING
        and delivery.next_attempt_at is not None
    ):
        wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
        webhooks.enqueue([delivery_pk], delay_ms=max(int(wait * 1000), 0))
