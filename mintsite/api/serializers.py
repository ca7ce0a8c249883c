"""Serializers: the input the API checks, and the shapes its OpenAPI schema describes.

The token and collection documents are built as dicts in mintsite/api/documents.py (webhooks
send the same ones); the serializers below describe them for the schema.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from rest_framework import serializers

from generation.models import Token
from mintsite import egress
from mintsite.models import EventType, WebhookDelivery, WebhookScheme, WebhookSubscription

ADDRESS = r"^0x[0-9a-fA-F]{40}$"
STATUSES = ", ".join(Token.Status.values)
_ONE_STATUS = "(" + "|".join(Token.Status.values) + ")"
STATUS_LIST = rf"^{_ONE_STATUS}(,{_ONE_STATUS})*$"


# --- input ---------------------------------------------------------------------------------


class PageQuery(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, default=1, help_text="1-based page number")
    page_size = serializers.IntegerField(
        min_value=1,
        max_value=settings.API_MAX_PAGE_SIZE,
        required=False,
        help_text=f"Items per page (default {settings.API_PAGE_SIZE})",
    )


class CollectionTokenQuery(PageQuery):
    status = serializers.CharField(
        required=False,
        # the schema shows the pattern; any case is accepted
        validators=[
            RegexValidator(
                STATUS_LIST,
                message=f"unknown status; one or more of {STATUSES}",
                flags=re.IGNORECASE,
            )
        ],
        help_text=f"One status or several, comma-separated: {STATUSES}",
    )
    owner = serializers.RegexField(
        ADDRESS,
        required=False,
        help_text="0x address, any case (matched case-insensitively)",
        error_messages={"invalid": "not an address: expected 0x and 40 hex digits"},
    )

    def validate_status(self, value: str) -> list[str]:
        return value.upper().split(",")


class TokenQuery(CollectionTokenQuery):
    collection = serializers.SlugField(required=False, help_text="A collection's slug")


class TokenDetailQuery(serializers.Serializer):
    wait = serializers.IntegerField(
        min_value=0,
        max_value=settings.API_LONG_POLL_MAX_SECONDS,
        default=0,
        help_text="Long poll: with `since` or If-None-Match, wait up to this many seconds "
        "(at most API_LONG_POLL_MAX_SECONDS) for a change; 304 if none came",
    )
    since = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="What the client has: the ETag of its copy, or the status it last saw",
    )


class TokenDetailByIdQuery(TokenDetailQuery):
    collection = serializers.SlugField(
        required=False, help_text="Names the collection when several exist"
    )


class DeliveryQuery(PageQuery):
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices, required=False)


def _deliverable_url(value: str) -> str:
    """An http(s) URL that httpx parses (Django's URL rules let some through that it refuses)
    and the egress policy allows (mintsite/egress.py); each delivery checks again."""
    problem = egress.url_problem(value, egress.Policy.from_settings())
    if problem:
        raise serializers.ValidationError(problem)
    return value


class WebhookSubscriptionSerializer(serializers.ModelSerializer):
    url = serializers.URLField(max_length=500, validators=[_deliverable_url])
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        allow_empty=False,
        min_length=1,
        max_length=len(EventType.choices),
        help_text="Any of: " + ", ".join(f"{t.value} ({t.label})" for t in EventType),
    )
    scheme = serializers.ChoiceField(
        choices=WebhookScheme.choices,
        # no serializer default: a PUT without it would reset a standard subscription to mint
        required=False,
        help_text="How deliveries are signed: `mint` (the Mint-Signature header; the default) "
        "or `standard` (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature). "
        "Set when creating; it cannot be changed afterwards",
    )

    state = serializers.ChoiceField(
        choices=["active", "paused", "disabled"],
        read_only=True,
        help_text="paused: `active` is false; disabled: by the circuit breaker after sustained "
        "failure (see disabled_reason), until a manager re-enables it",
    )

    class Meta:
        model = WebhookSubscription
        fields = [
            "id",
            "url",
            "scheme",
            "event_types",
            "description",
            "active",
            "state",
            "disabled_at",
            "disabled_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "disabled_at", "disabled_reason", "created_at", "updated_at"]

    def validate_event_types(self, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("lists an event type twice")
        return value

    def validate_scheme(self, value: str) -> str:
        if self.instance is not None and value != self.instance.scheme:
            raise serializers.ValidationError(
                "cannot be changed: the receiver verifies with it; create a new subscription "
                "(with its own secret) for the other scheme"
            )
        return value


class WebhookSubscriptionCreatedSerializer(WebhookSubscriptionSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="Verifies the signature of each delivery (`whsec_` and base64, the form the "
        "Standard Webhooks libraries take); shown only in this response",
    )

    class Meta(WebhookSubscriptionSerializer.Meta):
        fields = [*WebhookSubscriptionSerializer.Meta.fields, "secret"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_duration_ms",
            "last_error",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields


# --- documents (schema only) -----------------------------------------------------------------


class ErrorDetail(serializers.Serializer):
    code = serializers.CharField(help_text="Stable; branch on this")
    message = serializers.CharField(help_text="For people; may change")
    status = serializers.IntegerField(help_text="The HTTP status")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Invalid input: field → messages",
    )
    retry_after = serializers.IntegerField(required=False, help_text="429: seconds to wait")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetail()


class TokenEventSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Token.Status.choices)
    detail = serializers.CharField(help_text="Why, in words")
    at = serializers.DateTimeField()


class TraitRaritySerializer(serializers.Serializer):
    value = serializers.CharField()
    probability = serializers.FloatField()
    bits = serializers.FloatField()


class RaritySerializer(serializers.Serializer):
    traits = serializers.DictField(child=TraitRaritySerializer())
    probability = serializers.FloatField()
    score = serializers.FloatField(help_text="Sum of -log2(p) over the traits; rarer is higher")


class AttributeSerializer(serializers.Serializer):
    """An attribute as the metadata has it (OpenSea's standard); each option's probability is
    in the token's ``rarity``."""

    trait_type = serializers.CharField()
    value = serializers.CharField()


class TokenSerializer(serializers.Serializer):
    collection = serializers.CharField()
    contract = serializers.CharField()
    chain_id = serializers.IntegerField()
    token_id = serializers.IntegerField()
    owner = serializers.CharField()
    status = serializers.ChoiceField(choices=Token.Status.choices)
    failure_reason = serializers.CharField(allow_null=True)
    mint_tx = serializers.CharField()
    mint_block_number = serializers.IntegerField()
    mint_block_hash = serializers.CharField()
    attempt = serializers.IntegerField()
    updated_at = serializers.DateTimeField()
    seed = serializers.CharField(required=False, help_text="Once published")
    token_uri = serializers.CharField(required=False, help_text="Once published")
    metadata_url = serializers.URLField(required=False, help_text="Once published")
    image_cid = serializers.CharField(required=False, help_text="Once published")
    image_url = serializers.URLField(required=False, help_text="Once published")
    clip_scores = serializers.DictField(required=False, help_text="Once published")
    clip_thresholds = serializers.DictField(required=False, help_text="Once published")
    publish_tx = serializers.CharField(required=False, help_text="Once published")
    traits = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="Once rendered"
    )


class TokenDetailSerializer(TokenSerializer):
    attributes = AttributeSerializer(many=True, required=False, allow_null=True)
    rarity = RaritySerializer(required=False, allow_null=True)
    events = TokenEventSerializer(many=True, help_text="The stages entered, oldest first")


def page_of(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    return type(
        name,
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(),
            "page": serializers.IntegerField(),
            "pages": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
        },
    )


class RarityOptionSerializer(serializers.Serializer):
    name = serializers.CharField()
    prompt = serializers.CharField(required=False)
    weight = serializers.FloatField(required=False)
    quota = serializers.IntegerField(required=False)
    probability = serializers.FloatField(allow_null=True)


class RarityCategorySerializer(serializers.Serializer):
    name = serializers.CharField()
    verify = serializers.BooleanField()
    options = RarityOptionSerializer(many=True)


class RarityTableSerializer(serializers.Serializer):
    collection = serializers.CharField()
    mode = serializers.CharField(allow_null=True)
    max_supply = serializers.IntegerField()
    categories = RarityCategorySerializer(many=True)
    problems = serializers.ListField(child=serializers.CharField(), required=False)


class TokenCountsSerializer(serializers.Serializer):
    minted = serializers.IntegerField()
    published = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())


class CollectionSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    chain_id = serializers.IntegerField()
    contract = serializers.CharField()
    deployment_block = serializers.IntegerField()
    max_supply = serializers.IntegerField()
    config_digest = serializers.CharField(allow_null=True)
    frozen = serializers.BooleanField()
    contract_uri = serializers.CharField(allow_null=True)
    paused = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    tokens = TokenCountsSerializer()
    rarity = RarityTableSerializer()


class ProvenanceSerializer(serializers.Serializer):
    collection = serializers.CharField()
    token_id = serializers.IntegerField()
    token_uri = serializers.CharField()
    metadata_url = serializers.URLField()
    metadata_sha256 = serializers.CharField()
    provenance = serializers.DictField(help_text="The provenance object of the metadata")


class RequeuedSerializer(serializers.Serializer):
    previous_status = serializers.CharField()
    status = serializers.CharField()
    stage = serializers.CharField()
    actor = serializers.CharField()


class RequeueResponseSerializer(serializers.Serializer):
    requeued = RequeuedSerializer()
    token = TokenDetailSerializer()


TokenPage = page_of(TokenSerializer, "TokenPage")
CollectionPage = page_of(CollectionSerializer, "CollectionPage")
WebhookSubscriptionPage = page_of(WebhookSubscriptionSerializer, "WebhookSubscriptionPage")
WebhookDeliveryPage = page_of(WebhookDeliverySerializer, "WebhookDeliveryPage")


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    if not data:  # a poll without a query string, most requests: the defaults, built once
        return dict(_defaults(serializer_class))
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


@functools.cache
def _defaults(serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
    serializer = serializer_class(data={})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
