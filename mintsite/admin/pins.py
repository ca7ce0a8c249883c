"""Pins in the admin: every CID this backend pinned, and which IPFS target holds it.

Read-only: the pin stage, the freeze and the pin check (generation/pin_check.py) write the
ledger. Managers see their collections' pins; operators (superusers) see all, and may run the
check on the CIDs they select (it asks each target and pins again what one lacks).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from generation.models import Pin, PinnedContent
from generation.pin_check import check_pins
from ipfs.errors import IpfsError
from mintsite.admin.integrations import ManagedByCollection
from mintsite.admin.permissions import ReadOnly

__all__ = ["PinnedContentAdmin", "pins_by_target"]


def configured_targets() -> list[str]:
    """The target names of ``IPFS_TARGETS`` (else the one ``IPFS_BACKEND``)."""
    return list(settings.IPFS_TARGETS or [settings.IPFS_BACKEND])


def pins_by_target(content: PinnedContent | None) -> SafeString:
    """One line per configured target: held, missing (and why), or not yet checked."""
    if content is None:
        return format_html("{}", "not pinned")
    seen = {pin.target: pin for pin in content.pins.all()}
    rows = []
    for name in configured_targets():
        pin = seen.get(name)
        if pin is None:
            rows.append((name, "not checked yet", ""))
        elif pin.state == Pin.State.PINNED:
            rows.append((name, "pinned", f"checked {pin.checked_at:%Y-%m-%d %H:%M}"))
        else:
            rows.append((name, "MISSING", pin.error))
    return format_html_join("", '<div class="pin"><b>{}</b>: {} <small>{}</small></div>', rows)


class PinInline(ReadOnly, admin.TabularInline):
    model = Pin
    fields = readonly_fields = ("target", "state", "error", "pinned_at", "checked_at")
    extra = 0


class HeldByFewerThanQuorum(admin.SimpleListFilter):
    title = "quorum"
    parameter_name = "quorum"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("below", "held by fewer than IPFS_PIN_QUORUM targets")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() != "below":
            return queryset
        from django.db.models import Count, Q

        names = configured_targets()
        held = Count("pins", filter=Q(pins__state=Pin.State.PINNED, pins__target__in=names))
        quorum = settings.IPFS_PIN_QUORUM or len(names)
        return queryset.annotate(held=held).filter(held__lt=quorum)


@admin.register(PinnedContent)
class PinnedContentAdmin(ReadOnly, ManagedByCollection):
    list_display = ["cid", "label", "kind", "collection", "size", "targets", "checked_at"]
    list_filter = [
        HeldByFewerThanQuorum,
        "pins__state",
        "pins__target",
        "kind",
        ("collection", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["collection"]
    search_fields = ["=cid", "label"]
    fields = readonly_fields = (
        "cid",
        "label",
        "kind",
        "profile",
        "size",
        "source",
        "collection",
        "created_at",
        "checked_at",
        "targets",
    )
    inlines = [PinInline]
    actions = ["check_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("pins").distinct()

    @admin.display(description="IPFS targets")
    def targets(self, content: PinnedContent) -> SafeString:
        return pins_by_target(content)

    def has_check_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    @admin.action(description="Check at each IPFS target, pin again where missing")
    def check_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        cids = list(queryset.values_list("cid", flat=True)[:200])
        try:
            outcome = check_pins(cids=cids)
        except (IpfsError, OSError) as exc:
            self.message_user(request, f"The check failed: {exc}", messages.ERROR)
            return
        lines = "; ".join(f"{name}: {t.line()}" for name, t in outcome.targets.items())
        level = messages.WARNING if outcome.missing else messages.SUCCESS
        self.message_user(request, f"Checked {outcome.checked} CIDs. {lines}", level)
        for problem in outcome.problems[:20]:
            self.message_user(request, f"Still missing: {problem}", messages.ERROR)

    check_now.allowed_permissions = ("check",)  # type: ignore[attr-defined]
