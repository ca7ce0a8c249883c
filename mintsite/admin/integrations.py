"""Admin for API keys and webhooks: managers see only the rows of collections they manage
(``Collection.managers``); superusers see everything. Deliveries can be replayed from here."""

from __future__ import annotations

import json
from typing import Any

import dramatiq
from django import forms
from django.contrib import admin, messages
from django.db import models as django_models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from generation.models import Collection
from mintsite import egress, webhooks
from mintsite.admin import permissions
from mintsite.models import (
    ApiKey,
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)


def managed_collections(request: HttpRequest) -> QuerySet[Collection]:
    """The collections the admin's user may see (one rule for the whole admin)."""
    return permissions.managed_collections(request.user)


class ManagedCollectionFilter(admin.SimpleListFilter):
    """By collection, offering only those the user manages (never naming the others)."""

    title = "collection"
    parameter_name = "collection"
    path = "collection"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(c.pk), c.slug) for c in managed_collections(request).order_by("slug")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(**{f"{self.path}_id": int(value)})
        return queryset


class DeliveryCollectionFilter(ManagedCollectionFilter):
    path = "subscription__collection"


class ManagedByCollection(admin.ModelAdmin):
    """Rows reachable through ``collection_path`` from a collection the user manages.

    Being in the collection's ``managers`` is the whole grant, as for collections and tokens
    (docs/admin.md): a manager may do ``manager_may`` with her collections' rows and nothing
    else, whatever Django model permissions her account has; Django's permissions neither
    grant nor are needed for anything here, except that a superuser may do everything.
    """

    collection_path = "collection"
    manager_may: frozenset[str] = frozenset({"view"})

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.collection_path}__managers": request.user})

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "collection":
            kwargs["queryset"] = managed_collections(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _may(self, action: str, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return bool(request.user.is_active and request.user.is_staff)
        if action not in self.manager_may:
            return False
        collection_pk = None
        if obj is not None:
            *hops, last = self.collection_path.split("__")
            for hop in hops:
                obj = getattr(obj, hop)
            collection_pk = getattr(obj, f"{last}_id")
        return permissions.manages(request.user, collection_pk)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._may("view", request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may("view", request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may("add", request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may("change", request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may("delete", request, obj)


@admin.register(ApiKey)
class ApiKeyAdmin(ManagedByCollection):
    # issue, rename and revoke; deleting a key (and when it was last used) is the superuser's
    manager_may = frozenset({"view", "add", "change"})
    list_display = ["name", "collection", "shown_prefix", "created_at", "last_used_at", "revoked"]
    list_filter = [ManagedCollectionFilter, "revoked"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    @admin.display(description="key")
    def shown_prefix(self, obj: ApiKey) -> str:
        return f"mint_{obj.prefix}_…"

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["collection", "name"]
        return ["collection", "name", "shown_prefix", "created_at", "last_used_at", "revoked"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return []
        return ["collection", "shown_prefix", "created_at", "last_used_at"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        row, key = ApiKey.issue(obj.collection, obj.name)
        obj.pk, obj.prefix, obj.secret_hash = row.pk, row.prefix, row.secret_hash
        obj.created_at = row.created_at
        messages.warning(
            request,
            format_html(
                "The new key, shown only now (send it as 'Authorization: Bearer &lt;key&gt;'): "
                "<code>{}</code>",
                key,
            ),
        )

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.update(revoked=True)
        messages.success(request, f"{count} key(s) revoked")


def _https_urls(field: Any, **kwargs: Any) -> Any:
    if isinstance(field, django_models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class DisabledFilter(admin.SimpleListFilter):
    title = "circuit breaker"
    parameter_name = "disabled"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "disabled"), ("no", "not disabled")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.exclude(disabled_at=None)
        if self.value() == "no":
            return queryset.filter(disabled_at=None)
        return queryset


class WebhookSubscriptionForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = WebhookSubscription
        fields = ["collection", "url", "scheme", "event_types", "description", "active"]
        # the model's URLField would build a default form field (and warn about Django 6's
        # https default) before the declared one above replaces it
        formfield_callback = _https_urls

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "scheme" in self.fields:  # only when adding: it is read-only afterwards
            # a form posted without it (not the admin's own page) keeps the default, mint
            self.fields["scheme"].required = False

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        problem = egress.url_problem(url, egress.Policy.from_settings())
        if problem:
            raise forms.ValidationError(problem)
        return url

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        collection = cleaned.get("collection")
        if self.instance.pk is None and collection is not None:
            problem = WebhookSubscription.limit_problem(collection.pk)
            if problem:
                raise forms.ValidationError(problem)
        return cleaned


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ManagedByCollection):
    manager_may = frozenset({"view", "add", "change", "delete"})
    form = WebhookSubscriptionForm
    list_display = [
        "url",
        "collection",
        "scheme",
        "event_list",
        "state",
        "disabled_reason",
        "created_at",
    ]
    list_filter = [ManagedCollectionFilter, "scheme", "active", DisabledFilter]
    search_fields = ["url", "description"]
    actions = ["reenable"]

    @admin.display(description="events")
    def event_list(self, obj: WebhookSubscription) -> str:
        return ", ".join(obj.event_types)

    @admin.display(description="state")
    def state(self, obj: WebhookSubscription) -> str:
        return obj.state

    def get_fields(self, request: HttpRequest, obj: WebhookSubscription | None = None) -> list[str]:
        fields = ["collection", "url", "scheme", "event_types", "description", "active"]
        if obj is None:
            return fields
        return [*fields, "state", "disabled_at", "disabled_reason", "failure_streak"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: WebhookSubscription | None = None
    ) -> list[str]:
        if obj is None:
            return []
        # the scheme is the receiver's verifying code: another one is another subscription
        return ["collection", "scheme", "state", "disabled_at", "disabled_reason", "failure_streak"]

    @admin.action(description="Re-enable (the circuit breaker) and send the skipped deliveries")
    def reenable(self, request: HttpRequest, queryset: QuerySet[WebhookSubscription]) -> None:
        disabled = list(queryset.exclude(disabled_at=None).values_list("pk", flat=True))
        sent = 0
        try:
            for pk in disabled:
                sent += webhooks.reenable(pk)
        except dramatiq.errors.ConnectionError as exc:
            messages.error(request, f"the task broker is unreachable ({exc}); try again later")
            return
        messages.success(
            request, f"{len(disabled)} endpoint(s) re-enabled; {sent} skipped deliveries queued"
        )

    def save_model(
        self, request: HttpRequest, obj: WebhookSubscription, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            messages.warning(
                request,
                format_html(
                    "The subscription's signing secret, shown only now: <code>{}</code>",
                    obj.secret,
                ),
            )


class AttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ["number", "at", "status_code", "duration_ms", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # shown on a delivery's page, which only those who may see the delivery reach
        return request.user.is_superuser or permissions.manages(request.user)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ManagedByCollection):
    collection_path = "subscription__collection"  # view and replay: deliveries come from events
    list_display = [
        "event_type",
        "event_id",
        "receiver",
        "status",
        "attempts",
        "last_status_code",
        "last_duration_ms",
        "last_outcome",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "event_type", DeliveryCollectionFilter]
    search_fields = ["event_id", "subscription__url"]
    list_select_related = ["subscription"]
    readonly_fields = [
        "subscription",
        "event_id",
        "event_type",
        "status",
        "attempts",
        "attempt_limit",
        "next_attempt_at",
        "last_status_code",
        "last_duration_ms",
        "last_error",
        "created_at",
        "delivered_at",
        "body",
    ]
    exclude = ["payload"]
    inlines = [AttemptInline]
    actions = ["replay"]

    @admin.display(description="receiver")
    def receiver(self, obj: WebhookDelivery) -> str:
        return obj.subscription.url

    @admin.display(description="last outcome")
    def last_outcome(self, obj: WebhookDelivery) -> str:
        text = obj.last_error or ("" if obj.last_status_code is None else "accepted")
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="payload")
    def body(self, obj: WebhookDelivery) -> str:
        try:
            pretty = json.dumps(json.loads(bytes(obj.payload)), indent=2, sort_keys=True)
        except ValueError:
            pretty = bytes(obj.payload).decode("utf-8", errors="replace")
        return format_html("<pre>{}</pre>", pretty)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries come from events

    @admin.action(
        description="Replay: send again now, with a fresh timestamp", permissions=["view"]
    )
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        pks = list(queryset.values_list("pk", flat=True))
        try:
            for pk in pks:
                webhooks.replay(pk)
        except dramatiq.errors.ConnectionError as exc:
            messages.error(request, f"the task broker is unreachable ({exc}); replay again later")
            return
        messages.success(request, f"{len(pks)} deliver{'y' if len(pks) == 1 else 'ies'} queued")
