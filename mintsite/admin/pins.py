"""Pins in the admin: every CID this backend pinned, and which IPFS target holds it.

Read-only: the pin stage, the freeze and the pin check (generation/pin_check.py) write the
ledger. Managers see their collections' pins; operators (superusers) see all, and may send the
io workers the check of the CIDs they select (it asks each target and pins again what one
lacks).
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
from generation.pin_check import send_check
from mintsite.admin.integrations import ManagedByCollection
from mintsite.admin.permissions import ReadOnly

__all__ = ["PinnedContentAdmin", "pins_by_target"]

#: CIDs the admin's action checks at once (manage.py check_pins does all).
CHECK_AT_ONCE = 500


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
        """Sent to the io workers (a re-pin may wait minutes on a pinning service); each row's
        targets show the answers once it is done."""
        cids = list(queryset.values_list("cid", flat=True)[:CHECK_AT_ONCE])
        try:
            send_check(cids)
        except Exception as exc:  # either broker's errors: say so, nothing was sent
            self.message_user(request, f"The check was not sent: {exc}", messages.ERROR)
            return
        self.message_user(
            request,
            f"Sent a check of {len(cids)} CIDs to the io workers; reload to see each target's "
            "answer (a re-pin on a pinning service may take minutes).",
            messages.SUCCESS,
        )

    check_now.allowed_permissions = ("check",)  # type: ignore[attr-defined]
