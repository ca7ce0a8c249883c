"""What integrators hold: API keys scoped to one collection, and signed webhook subscriptions.

Secrets are random and shown once. An API key is stored as the sha256 of its secret (a leaked
database does not leak working keys); a webhook secret is stored as is, because signing each
delivery needs it (as with Stripe's endpoint secrets).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from generation.models import Collection

API_KEY_PREFIX = "mint"
WEBHOOK_SECRET_PREFIX = "whsec_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKey(models.Model):
    """``Authorization: Bearer mint_<prefix>_<secret>``: writes to one collection."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="Who or what uses the key")
    prefix = models.CharField(
        max_length=16, unique=True, editable=False, help_text="Names the key in logs; not secret"
    )
    secret_hash = models.CharField(max_length=64, editable=False, help_text="sha256 of the key")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.BooleanField(default=False, help_text="A revoked key is refused")

    class Meta:
        verbose_name = "API key"
        ordering = ["collection_id", "name", "pk"]

    def __str__(self) -> str:
        return f"{self.name} ({API_KEY_PREFIX}_{self.prefix}_…)"

    @classmethod
    def issue(cls, collection: Collection, name: str) -> tuple[ApiKey, str]:
        """A new key for ``collection``; returns the row and the key, which nothing stores."""
        prefix = secrets.token_hex(4)
        key = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        row = cls.objects.create(
            collection=collection, name=name, prefix=prefix, secret_hash=hash_secret(key)
        )
        return row, key

    @staticmethod
    def parse_prefix(key: str) -> str | None:
        """The prefix of a well-formed key, else None."""
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not parts[1] or not parts[2]:
            return None
        return parts[1]

    def matches(self, key: str) -> bool:
        return hmac.compare_digest(self.secret_hash, hash_secret(key))

    def touch(self) -> None:
        """Record a use, at most once a minute (a write per request would be a hot row)."""
        now = timezone.now()
        if self.last_used_at is None or (now - self.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now


class EventType(models.TextChoices):
    STAGE = "token.stage", "a token entered a stage (any status)"
    PUBLISHED = "token.published", "a token's metadata was published on-chain"
    FAILED = "token.failed", "a token failed"
    NEEDS_REVIEW = "token.needs_review", "the CLIP gate rejected every attempt"


def new_webhook_secret() -> str:
    """``whsec_`` and the base64 (standard alphabet, padded) of 32 random bytes: the form the
    Standard Webhooks libraries decode into their key in every language, so the same secret
    serves either scheme (``Mint-Signature`` keys its HMAC with the whole string). Secrets made
    before the ``standard`` scheme existed are URL-safe base64; their subscriptions are ``mint``
    ones, and a subscription's scheme is chosen once, when it is created."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookScheme(models.TextChoices):
    """How a subscription's deliveries are signed (docs/webhooks.md)."""

    MINT = "mint", "Mint-Signature (t=…,v1=<hex>)"
    STANDARD = "standard", "Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)"


class WebhookSubscription(models.Model):
    """An integrator's endpoint for some of a collection's token events."""

    collection = models.ForeignKey(
        Collection, on_delete=models.CASCADE, related_name="webhook_subscriptions"
    )
    url = models.URLField(max_length=500, help_text="http(s) endpoint that receives the POSTs")
    secret = models.CharField(
        max_length=100,
        default=new_webhook_secret,
        editable=False,
        help_text="Signs each delivery (the scheme's headers); shown once, at creation",
    )
    scheme = models.CharField(
        max_length=16,
        choices=WebhookScheme.choices,
        default=WebhookScheme.MINT,
        help_text="How deliveries are signed; chosen when the subscription is created",
    )
    event_types = models.JSONField(
        default=list, help_text="Any of: " + ", ".join(t.value for t in EventType)
    )
    description = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True, help_text="Inactive: no new deliveries")
    # The circuit breaker (mintsite/webhooks.py): failed tries in a row, since when, and, once
    # they were sustained, when and why the endpoint was disabled (a manager re-enables it).
    failure_streak = models.PositiveIntegerField(default=0, help_text="Failed tries in a row")
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by the circuit breaker: nothing is sent while set"
    )
    disabled_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["collection_id", "pk"]

    def __str__(self) -> str:
        return f"{self.collection.slug} → {self.url}"

    @classmethod
    def limit_problem(cls, collection_pk: int) -> str | None:
        """Why the collection may not have another subscription (None if it may)."""
        limit = settings.WEBHOOK_MAX_SUBSCRIPTIONS
        if cls.objects.filter(collection_id=collection_pk).count() >= limit:
            return (
                f"the collection already has {limit} webhook subscriptions, the most it may "
                "have (WEBHOOK_MAX_SUBSCRIPTIONS); delete one first"
            )
        return None

    @property
    def state(self) -> str:
        """active, paused (its ``active`` flag off) or disabled (by the circuit breaker)."""
        if self.disabled_at is not None:
            return "disabled"
        return "active" if self.active else "paused"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        errors: dict[str, list[str]] = {}
        problems = event_type_problems(self.event_types)
        if problems:
            errors["event_types"] = problems
        if self.url and not self.url.lower().startswith(("http://", "https://")):
            errors["url"] = ["must be an http:// or https:// URL"]
        if errors:
            raise ValidationError(errors)


def event_type_problems(value: object) -> list[str]:
    known = [t.value for t in EventType]
    if not isinstance(value, list) or not value:
        return [f"must be a non-empty list of event types, from: {', '.join(known)}"]
    unknown = [v for v in value if v not in known]
    if unknown:
        return [f"unknown event type(s) {unknown!r}; known: {', '.join(known)}"]
    if len(set(value)) != len(value):
        return ["lists an event type twice"]
    return []


class WebhookDelivery(models.Model):
    """One event for one subscription: the exact bytes sent, and how sending went."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed (attempts used up)"
        SKIPPED = "skipped", "skipped (the endpoint was disabled)"

    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(max_length=64, help_text="Stable per event; receivers dedupe on it")
    event_type = models.CharField(max_length=32, choices=EventType.choices)
    payload = models.BinaryField(help_text="The JSON body, byte for byte as signed")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Tries so far, replays included")
    attempt_limit = models.PositiveIntegerField(
        default=8, help_text="Failed once this many tries were made (a replay raises it)"
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # Why the last try failed, in our words (mintsite/webhooks.py): never the receiver's text
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One delivery per event and subscription, however often the dispatcher hears it.
            models.UniqueConstraint(
                fields=["subscription", "event_id"], name="webhook_delivery_unique_event"
            )
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.subscription.url} ({self.status})"


class WebhookAttempt(models.Model):
    """The log of every try of a delivery: its status code and timing, or why it failed. The
    response body is never read (a receiver's answer must not come back to the key holder)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery_id", "number"]

    def __str__(self) -> str:
        outcome = self.status_code if self.status_code is not None else self.error[:40]
        return f"attempt {self.number}: {outcome}"
