"""The tokens' admin: each token's stage, images, scores and history, and the manager's
actions on it (approve, re-render, retry: generation/review.py says what each does)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from chain.models import TokenTransfer
from generation import review
from generation.errors import ReviewRefused
from generation.models import PinnedContent, Token, TokenEvent
from mintsite.admin import token_views
from mintsite.admin.permissions import ReadOnly, managed_collections, manages, who
from mintsite.admin.pins import pins_by_target

Status = Token.Status


def _names(items: list[str]) -> str:
    return ", ".join(items)


class ManagedByCollection(ReadOnly):
    """Read-only admin of rows that belong to a collection through ``collection_path``: tokens
    come from the chain, their events from the pipeline, and they change only through the
    actions."""

    collection_path = "collection"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.collection_path}__in": managed_collections(request.user)})

    def _collection_pk(self, obj: Any) -> int:
        return (
            obj.collection_id if self.collection_path == "collection" else obj.token.collection_id
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or manages(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return super().has_view_permission(request, obj)  # type: ignore[misc]
        return manages(request.user, self._collection_pk(obj) if obj is not None else None)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "collection":
            kwargs["queryset"] = managed_collections(request.user)
        elif db_field.name == "token":
            kwargs["queryset"] = Token.objects.filter(
                collection__in=managed_collections(request.user)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]


class TokenEventInline(ReadOnly, admin.TabularInline):
    model = TokenEvent
    fields = ["at", "status", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["at", "pk"]
    verbose_name = "stage"
    verbose_name_plural = "stage history"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or manages(request.user, obj.collection_id)


class TokenTransferInline(ReadOnly, admin.TabularInline):
    model = TokenTransfer
    fields = ["block_number", "from_address", "to_address", "tx_hash"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "transfer"
    verbose_name_plural = "transfers since the mint (confirmed)"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or manages(request.user, obj.collection_id)


STATUS_COLOURS = {
    Status.NEEDS_REVIEW: "#b36b00",
    Status.FAILED: "#ba2121",
    Status.REORGED: "#666",
    Status.PUBLISHED: "#2f7d32",
    Status.FINAL: "#2f7d32",
}


@admin.register(Token)
class TokenAdmin(ManagedByCollection, admin.ModelAdmin):
    list_display = [
        "token",
        "thumbnail",
        "of",
        "stage",
        "attempts",
        "clip",
        "failure",
        "updated_at",
    ]
    list_display_links = ["token"]
    list_filter = ["status", ("collection", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["collection"]
    search_fields = ["=token_id", "owner", "mint_tx_hash", "image_cid", "metadata_cid"]
    list_per_page = 50
    actions = ["retry", "approve", "rerender"]
    inlines = [TokenEventInline, TokenTransferInline]
    change_form_template = "admin/generation/token/change_form.html"
    fieldsets = [
        (None, {"fields": ["collection", "token_id", "owner", "stage", "failure_reason"]}),
        (
            "Image",
            {"fields": ["image", "attempts", "image_cid", "metadata_cid", "token_uri", "pins"]},
        ),
        ("CLIP gate", {"fields": ["clip_table", "traits"]}),
        (
            "Mint and seed",
            {
                "fields": [
                    "mint_tx_hash",
                    "mint_log_index",
                    "mint_block_number",
                    "mint_block_hash",
                    "expected_seed",
                    "seed",
                    "seed_tx_hash",
                ]
            },
        ),
        (
            "Publishing",
            {
                "fields": [
                    "image_sha256",
                    "metadata_sha256",
                    "publish_tx_hash",
                    "publish_block_number",
                ]
            },
        ),
        ("Provenance record", {"fields": ["record"], "classes": ["collapse"]}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Token | None = None) -> list[str]:
        return [name for _, options in self.fieldsets for name in _flat(options["fields"])]

    @admin.display(description="IPFS targets")
    def pins(self, token: Token) -> SafeString:
        """Where the image and the metadata are pinned, target by target (the pin ledger)."""
        wanted = [("image", token.image_cid), ("metadata", token.metadata_cid)]
        found = {
            c.cid: c
            for c in PinnedContent.objects.filter(cid__in=[cid for _, cid in wanted if cid])
            .prefetch_related("pins")
        }  # fmt: skip
        return format_html_join(
            "",
            "<div><i>{}</i> {}</div>",
            ((what, pins_by_target(found.get(cid))) for what, cid in wanted if cid),
        )

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(
            lambda request, pk, attempt: token_views.token_render(request, self, pk, attempt)
        )
        return [
            path("<int:pk>/render/<int:attempt>.png", view, name="generation_token_render"),
            *super().get_urls(),
        ]

    def has_manage_permission(self, request: HttpRequest) -> bool:
        """Running the actions: the collection's managers (the action checks each token)."""
        return request.user.is_superuser or manages(request.user)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        paused = list(
            managed_collections(request.user).filter(paused=True).values_list("slug", flat=True)
        )
        if request.method == "POST" and "_back_to_token" in request.POST:
            response = super().changelist_view(request, extra_context)
            pk = request.POST.get("_back_to_token", "")
            if response.status_code == 302 and pk.isdigit():
                return HttpResponseRedirect(reverse("admin:generation_token_change", args=[pk]))
            return response
        if paused and request.method == "GET":
            self.message_user(
                request,
                f"Paused: {_names(paused)}. No token of a paused collection starts rendering "
                "or publishing until it is unpaused (Collections → Unpause generation).",
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)

    # --- columns

    @admin.display(description="token", ordering="token_id")
    def token(self, obj: Token) -> str:
        return f"#{obj.token_id}"

    @admin.display(description="collection", ordering="collection__slug")
    def of(self, obj: Token) -> str:
        return obj.collection.slug

    def image_url(self, obj: Token) -> str | None:
        """Where the admin shows the token's image: the accepted one, else the last rejected."""
        if obj.image_cid:
            return reverse("ipfs-gateway", args=[obj.image_cid])
        if obj.image_sha256:
            return reverse("admin:generation_token_render", args=[obj.pk, obj.attempt])
        if obj.status == Status.NEEDS_REVIEW and obj.attempt > 0:
            return reverse("admin:generation_token_render", args=[obj.pk, obj.attempt - 1])
        return None

    @admin.display(description="image")
    def thumbnail(self, obj: Token) -> str | SafeString:
        url = self.image_url(obj)
        if url is None:
            return "—"
        return format_html(
            '<img src="{}" width="64" height="64" loading="lazy" alt="token {}"{}>',
            url,
            obj.token_id,
            mark_safe(' title="rejected by the CLIP gate"')
            if obj.status == Status.NEEDS_REVIEW
            else "",
        )

    @admin.display(description="status", ordering="status")
    def stage(self, obj: Token) -> SafeString:
        colour = STATUS_COLOURS.get(obj.status, "inherit")
        return format_html(
            '<strong style="color: {}">{}</strong>', colour, obj.get_status_display()
        )

    @admin.display(description="attempts")
    def attempts(self, obj: Token) -> str:
        tried = obj.attempt + 1 if obj.image_sha256 else obj.attempt
        text = f"{tried} of {obj.collection.max_attempts}"
        if obj.image_sha256:
            text += f" (accepted: attempt {obj.attempt})"
        return text

    @admin.display(description="CLIP scores / thresholds")
    def clip(self, obj: Token) -> str | SafeString:
        return clip_lines(obj.clip_scores)

    @admin.display(description="why")
    def failure(self, obj: Token) -> str:
        reason = obj.failure_reason
        return reason if len(reason) <= 160 else reason[:157] + "…"

    # --- change view displays

    @admin.display(description="image")
    def image(self, obj: Token) -> str | SafeString:
        url = self.image_url(obj)
        shown = (
            format_html('<a href="{0}"><img src="{0}" width="256" alt="token image"></a>', url)
            if url
            else "No image yet."
        )
        if obj.status != Status.NEEDS_REVIEW or obj.attempt < 1:
            return shown
        rejected = format_html_join(
            " ",
            '<figure style="display:inline-block;margin:0 8px 0 0"><a href="{0}">'
            '<img src="{0}" width="96" alt="attempt {1}"></a><figcaption>attempt {1}'
            "</figcaption></figure>",
            (
                (reverse("admin:generation_token_render", args=[obj.pk, a]), a)
                for a in range(obj.attempt)
            ),
        )
        return format_html(
            "{}<p>The CLIP gate rejected each attempt; <strong>Approve</strong> accepts the "
            "last one (attempt {}) as shown. Every attempt:</p>{}",
            shown,
            obj.attempt - 1,
            rejected,
        )

    @admin.display(description="scores")
    def clip_table(self, obj: Token) -> str | SafeString:
        return clip_lines(obj.clip_scores, every=True)

    @admin.display(description="render record")
    def record(self, obj: Token) -> SafeString:
        return format_html(
            "<pre>{}</pre>", json.dumps(obj.render_record, indent=2, ensure_ascii=False)
        )

    # --- actions

    @admin.action(description="Retry failed tokens from the stage that failed")
    def retry(self, request: HttpRequest, queryset: QuerySet[Token]) -> None:
        def run(token: Token) -> str:
            stage = review.retry(token, who(request))
            waits = ", waiting: the collection is paused" if token.collection.paused else ""
            return f"#{token.token_id} ({stage} stage{waits})"

        self._each(request, queryset, run, "Sent back to the stage that failed")

    retry.allowed_permissions = ("manage",)

    @admin.action(description="Approve the rejected image of tokens in review")
    def approve(self, request: HttpRequest, queryset: QuerySet[Token]) -> None:
        def run(token: Token) -> str:
            attempt = review.queue_approval(token, who(request))
            return f"#{token.token_id} (attempt {attempt})"

        self._each(
            request,
            queryset,
            run,
            "Approval queued on the render workers (the image the gate rejected is accepted as "
            "is, then pinned and published)",
        )

    approve.allowed_permissions = ("manage",)

    @admin.action(description="Re-render tokens in review (another round of attempts)")
    def rerender(self, request: HttpRequest, queryset: QuerySet[Token]) -> None:
        def run(token: Token) -> str:
            attempts = review.queue_rerender(token, who(request))
            return f"#{token.token_id} (attempts {attempts.start}..{attempts.stop - 1})"

        self._each(request, queryset, run, "Re-render queued on the render workers")

    rerender.allowed_permissions = ("manage",)

    def _each(self, request: HttpRequest, queryset: QuerySet[Token], run: Any, done: str) -> None:
        ok, skipped = [], []
        managed = set(managed_collections(request.user).values_list("pk", flat=True))
        for token in queryset.select_related("collection").order_by("collection_id", "token_id"):
            label = f"{token.collection.slug} #{token.token_id}"
            if token.collection_id not in managed:  # the queryset says so already
                skipped.append(f"{label}: not a collection of yours")
                continue
            try:
                ok.append(run(token))
            except ReviewRefused as exc:
                skipped.append(f"{label}: {exc}")
        if ok:
            self.message_user(request, f"{done} by {who(request)}: {_names(ok)}.")
        if skipped:
            self.message_user(request, f"Skipped {_names(skipped)}.", messages.WARNING)


def _flat(fields: list) -> list[str]:
    out: list[str] = []
    for name in fields:
        out.extend(name if isinstance(name, tuple | list) else [name])
    return out


def clip_lines(clip_scores: dict, every: bool = False) -> str | SafeString:
    """Each gate score beside its threshold, marked pass or fail."""
    scores = (clip_scores or {}).get("scores") or {}
    thresholds = (clip_scores or {}).get("thresholds") or {}
    if not thresholds:
        return "—"
    lines = []
    for name, limit in thresholds.items():
        score = scores.get(name)
        if score is None:
            continue
        # uniqueness: the nearest earlier image must stay BELOW the CLIP threshold, and its
        # near-duplicate distance ABOVE that threshold
        passed = score < limit if name == "uniqueness_max" else score >= limit
        relation = "<" if name == "uniqueness_max" else "≥"
        if name == "near_duplicate_min":
            passed, relation = score > limit, ">"
        if name.endswith(":margin"):
            passed = score > 0 and score >= limit
        lines.append(
            (
                "#2f7d32" if passed else "#ba2121",
                "✓" if passed else "✗",
                name,
                f"{score:.4f}",
                relation,
                f"{limit:.4f}",
            )
        )
    if not every:
        lines = lines[:3]
    html = format_html_join(
        mark_safe("<br>"),
        '<span style="color: {}">{} {} {} (needs {} {})</span>',
        lines,
    )
    review_note = (clip_scores or {}).get("review")
    if every and review_note:
        html = format_html("{}<br>Review: {}", html, json.dumps(review_note, ensure_ascii=False))
    return html


@admin.register(TokenEvent)
class TokenEventAdmin(ManagedByCollection, admin.ModelAdmin):
    collection_path = "token__collection"
    list_display = ["at", "token_link", "collection", "status", "detail"]
    list_filter = ["status", ("token__collection", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["token__collection"]
    search_fields = ["detail", "=token__token_id"]
    date_hierarchy = "at"
    readonly_fields = ["token", "status", "detail", "at"]

    @admin.display(description="token", ordering="token__token_id")
    def token_link(self, obj: TokenEvent) -> SafeString:
        url = reverse("admin:generation_token_change", args=[obj.token_id])
        return format_html('<a href="{}">#{}</a>', url, obj.token.token_id)

    @admin.display(description="collection")
    def collection(self, obj: TokenEvent) -> str:
        return obj.token.collection.slug
