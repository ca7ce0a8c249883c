"""The admin that runs a collection: its config and rarity table, the freeze, pause and resume.

Who sees what is mintsite/admin/permissions.py. Adding or deleting a collection, and choosing
its managers, its chain and its contract, are the superuser's. The tokens' admin is
mintsite/admin/tokens.py.

docs/admin.md is the manager's guide; generation/review.py says what approve, re-render and
retry do to a token.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from generation.models import FROZEN_FIELDS, Collection, Token
from mintsite.admin.forms import CollectionForm
from mintsite.admin.permissions import managed_collections, manages, who

Status = Token.Status
IN_PROGRESS = [
    Status.CONFIRMED,
    Status.SEED_COMMITTED,
    Status.RENDERING,
    Status.RENDERED,
    Status.PINNED,
    Status.PUBLISHING,
]
DONE = [Status.PUBLISHED, Status.FINAL]


def _names(items: list[str]) -> str:
    return ", ".join(items)


# --------------------------------------------------------------------------------------------
# Collections


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    form = CollectionForm
    list_display = [
        "slug",
        "name",
        "chain_id",
        "contract",
        "frozen",
        "paused",
        "pipeline",
    ]
    list_filter = ["paused"]
    search_fields = ["slug", "name", "contract_address"]
    filter_horizontal = ["managers"]
    actions = ["freeze", "pause", "unpause"]
    change_form_template = "admin/generation/collection/change_form.html"

    # --- who may do what

    def get_queryset(self, request: HttpRequest) -> QuerySet[Collection]:
        queryset = with_token_counts(super().get_queryset(request))
        if request.user.is_superuser:
            return queryset
        return queryset.filter(pk__in=managed_collections(request.user).values("pk"))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or manages(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Collection | None = None) -> bool:
        if request.user.is_superuser:
            return super().has_view_permission(request, obj)
        return manages(request.user, obj.pk if obj is not None else None)

    def has_change_permission(self, request: HttpRequest, obj: Collection | None = None) -> bool:
        return self.has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Collection | None = None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)

    # --- the form

    def get_fieldsets(self, request: HttpRequest, obj: Collection | None = None) -> list:
        frozen = bool(obj and obj.config_locked)
        return [
            (None, {"fields": ["slug", "name", "description", "paused", "managers"]}),
            (
                "Model",
                {
                    "fields": [
                        "model_dir",
                        "model_config_dir",
                        "scheduler",
                        "steps",
                        "guidance",
                        ("width", "height"),
                        "lora_adapters",
                        "quantization",
                        "onnx_dir",
                        "publish_weights",
                        "cid_profile",
                    ]
                },
            ),
            ("Prompts", {"fields": ["prompt_template", "negative_prompt", "style_prompt"]}),
            (
                "CLIP gate",
                {
                    "fields": [
                        "clip_dir",
                        "clip_threshold",
                        "trait_margin",
                        "near_duplicate_threshold",
                        "uniqueness_threshold",
                        "style_images",
                        "style_images_threshold",
                        "max_attempts",
                    ]
                },
            ),
            (
                "Traits and rarity",
                {"fields": ["rarity_preview"] if frozen else ["rarity", "rarity_preview"]},
            ),
            ("Supply", {"fields": ["max_supply"]}),
            (
                "Marketplaces",
                {
                    "fields": ["image", "banner_image"],
                    "description": "The contract metadata's pictures (ERC-7572), pinned to "
                    "IPFS with it when the freeze is prepared; its link to the collection's "
                    "page and its royalty (read from the contract) are added then too.",
                },
            ),
            (
                "Chain",
                {
                    "fields": [
                        "chain_id",
                        "contract_address",
                        "deployment_block",
                        "seed_delay",
                        "vrf_coordinator",
                        "vrf_subscription_id",
                        "vrf_key_hash",
                        "config_digest",
                        "contract_uri",
                        "prepared_config_digest",
                    ]
                },
            ),
            ("Pipeline", {"fields": ["pipeline_links"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Collection | None = None) -> list[str]:
        readonly = [
            "config_digest",
            "contract_uri",
            "prepared_config_digest",
            "rarity_preview",
            "pipeline_links",
        ]
        if not request.user.is_superuser:
            # who runs it, and which contract it is, are the operator's to set
            readonly += [
                "managers",
                "slug",
                "chain_id",
                "contract_address",
                "deployment_block",
                # the contract's, fixed at its deployment
                "seed_delay",
                "vrf_coordinator",
                "vrf_subscription_id",
                "vrf_key_hash",
            ]
        if obj is not None and obj.config_locked:
            # the pictures too: they are in the contract metadata the prepared freeze names
            readonly += [*FROZEN_FIELDS, "image", "banner_image"]
        return readonly

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("chain_id", settings.EMBEDDED_CHAIN_ID)
        return initial

    # --- columns and read-only displays

    @admin.display(description="contract")
    def contract(self, obj: Collection) -> str:
        return f"{obj.contract_address[:8]}…{obj.contract_address[-4:]}"

    @admin.display(description="frozen", boolean=True)
    def frozen(self, obj: Collection) -> bool:
        return bool(obj.config_digest)

    @admin.display(description="tokens")
    def pipeline(self, obj: Collection) -> SafeString:
        return self._pipeline_summary(obj)

    def _pipeline_summary(self, obj: Collection) -> SafeString:
        base = reverse("admin:generation_token_changelist") + f"?collection__id__exact={obj.pk}"
        parts = [
            (getattr(obj, "tokens_total", 0), "minted", base),
            (getattr(obj, "tokens_done", 0), "published", None),
            (getattr(obj, "tokens_in_progress", 0), "in progress", None),
            (
                getattr(obj, "tokens_review", 0),
                "need review",
                f"{base}&status__exact={Status.NEEDS_REVIEW}",
            ),
            (getattr(obj, "tokens_failed", 0), "failed", f"{base}&status__exact={Status.FAILED}"),
        ]
        return format_html_join(
            " · ",
            "{}",
            (
                (format_html('<a href="{}">{} {}</a>', url, n, label) if url else f"{n} {label}",)
                for n, label, url in parts
            ),
        )

    @admin.display(description="probabilities")
    def rarity_preview(self, obj: Collection | None) -> str | SafeString:
        if obj is None or obj.pk is None:
            return "Save the collection to see each option's probability."
        return rarity_table_html(obj.rarity, obj.max_supply)

    @admin.display(description="links")
    def pipeline_links(self, obj: Collection | None) -> str | SafeString:
        if obj is None or obj.pk is None:
            return "—"
        if not hasattr(obj, "tokens_total"):
            obj = with_token_counts(Collection.objects.filter(pk=obj.pk)).get()
        links = [
            ("Webhook deliveries", webhook_deliveries_url(obj)),
        ]
        if obj.contract_uri.startswith("ipfs://"):
            cid = obj.contract_uri.removeprefix("ipfs://")
            links.append(("Contract metadata (ERC-7572)", reverse("ipfs-gateway", args=[cid])))
        return format_html(
            "{}<br>{}",
            self._pipeline_summary(obj),
            format_html_join(" · ", '<a href="{}">{}</a>', ((url, text) for text, url in links)),
        )

    # --- the freeze: prepared here, signed with the contract admin's key elsewhere
    # (chain/freeze.py; the web tier holds no chain key)

    def get_urls(self) -> list:
        from django.urls import path

        return [
            path(
                "<int:pk>/freeze/",
                self.admin_site.admin_view(self.freeze_view),
                name="generation_collection_freeze",
            ),
            *super().get_urls(),
        ]

    def render_change_form(self, request: HttpRequest, context: dict, *args: Any, **kwargs: Any):
        obj = kwargs.get("obj")
        context["can_freeze"] = bool(
            obj is not None
            and obj.pk
            and not obj.config_digest
            and self.has_change_permission(request, obj)
        )
        context["freeze_prepared"] = bool(obj is not None and obj.prepared_config_digest)
        return super().render_change_form(request, context, *args, **kwargs)

    def response_change(self, request: HttpRequest, obj: Collection) -> HttpResponse:
        if "_freeze" in request.POST:
            if self._prepare_one(request, obj):
                return HttpResponseRedirect(_freeze_url(obj))
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    @admin.action(description="Prepare the freeze transaction (for the contract admin to sign)")
    def freeze(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        for collection in queryset.order_by("slug"):
            if self._prepare_one(request, collection):
                self.message_user(
                    request,
                    format_html(
                        '{}: freeze prepared; <a href="{}">the transaction to sign</a>.',
                        collection.slug,
                        _freeze_url(collection),
                    ),
                )

    freeze.allowed_permissions = ("change",)

    def _prepare_one(self, request: HttpRequest, collection: Collection) -> bool:
        from chain.errors import ChainError
        from chain.freeze import FreezeRefused, prepare_freeze

        label = collection.slug
        try:
            prepare_freeze(collection)
        except FreezeRefused:
            self.message_user(
                request, f"{label}: already frozen; nothing was prepared", messages.WARNING
            )
            return False
        except ValidationError as exc:
            problems = [f"{field}: {m}" for field, ms in exc.message_dict.items() for m in ms]
            self.message_user(
                request,
                f"{label}: not prepared, its config is invalid: " + "; ".join(problems),
                messages.ERROR,
            )
            return False
        except (ImproperlyConfigured, OSError, ChainError) as exc:  # pinning, the royalty read
            self.message_user(
                request, f"{label}: not prepared: {type(exc).__name__}: {exc}", messages.ERROR
            )
            return False
        return True

    def freeze_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The prepared freeze transaction, what the chain holds, and prepare / withdraw."""
        from django.core.exceptions import PermissionDenied
        from django.shortcuts import get_object_or_404
        from django.template.response import TemplateResponse

        from chain.freeze import freeze_call

        collection = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_change_permission(request, collection):
            raise PermissionDenied
        if request.method == "POST":
            if "_prepare" in request.POST:
                self._prepare_one(request, collection)
            elif "_withdraw" in request.POST:
                self._withdraw_one(request, collection)
            return HttpResponseRedirect(request.path)
        collection = Collection.objects.get(pk=pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Freeze {collection.slug}",
            "opts": self.model._meta,
            "original": collection,
            "call": freeze_call(collection),
            "on_chain": _on_chain_state(collection),
        }
        return TemplateResponse(request, "admin/generation/collection/freeze.html", context)

    def _withdraw_one(self, request: HttpRequest, collection: Collection) -> None:
        from requests.exceptions import RequestException
        from web3.exceptions import Web3Exception

        from chain.chains import web3_for
        from chain.errors import ChainError
        from chain.freeze import withdraw_freeze

        try:
            withdraw_freeze(web3_for(collection.chain_id), collection)
        except (ChainError, Web3Exception, RequestException, OSError) as exc:
            self.message_user(request, f"{collection.slug}: not withdrawn: {exc}", messages.ERROR)
            return
        self.message_user(
            request,
            f"{collection.slug}: prepared freeze withdrawn by {who(request)}; the config can "
            "change again. Make sure no signer still holds the old transaction.",
        )

    @admin.action(description="Pause generation (no token starts rendering or publishing)")
    def pause(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        self._set_paused(request, queryset, True)

    pause.allowed_permissions = ("change",)

    @admin.action(description="Unpause generation (and send what waited)")
    def unpause(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        self._set_paused(request, queryset, False)

    unpause.allowed_permissions = ("change",)

    def _set_paused(
        self, request: HttpRequest, queryset: QuerySet[Collection], paused: bool
    ) -> None:
        from generation import pipeline

        word = "paused" if paused else "unpaused"
        changed, skipped = [], []
        for collection in queryset.order_by("slug"):
            if collection.paused == paused:
                skipped.append(f"{collection.slug} (already {word})")
                continue
            Collection.objects.filter(pk=collection.pk).update(paused=paused)
            if paused:
                changed.append(collection.slug)
            else:
                sent = pipeline.resume(collection.pk)
                changed.append(f"{collection.slug} ({sent['renders']} token(s) sent to render)")
        if changed:
            note = (
                "no token of it starts rendering or publishing until it is unpaused; what is "
                "already rendered, pinned or published stays, and mints and seed commits go on"
                if paused
                else "tokens that waited go on"
            )
            self.message_user(
                request, f"{word.capitalize()} by {who(request)}: {_names(changed)}: {note}."
            )
        if skipped:
            self.message_user(request, f"Skipped: {_names(skipped)}.", messages.WARNING)


def _freeze_url(collection: Collection) -> str:
    return reverse("admin:generation_collection_freeze", args=[collection.pk])


def _on_chain_state(collection: Collection) -> str:
    """What the contract holds now, in words (the listener records a confirmed freeze)."""
    from requests.exceptions import RequestException
    from web3.exceptions import Web3Exception

    from chain.chains import web3_for
    from chain.errors import ChainError
    from chain.freeze import ZERO_DIGEST, on_chain_digest

    try:
        digest = on_chain_digest(web3_for(collection.chain_id), collection)
    except (ChainError, Web3Exception, RequestException, OSError) as exc:
        return f"cannot read the contract now: {exc}"
    if digest == ZERO_DIGEST:
        return "not frozen yet (configDigest is zero)"
    if collection.config_digest == digest:
        return f"frozen with config digest {digest}, recorded"
    if digest == collection.prepared_config_digest:
        return (
            f"frozen with the prepared config digest {digest}; the listener records it once "
            "the block has its confirmations"
        )
    return (
        f"frozen with config digest {digest}, which is NOT the one prepared here: the contract "
        "was frozen with another config; tell the operator"
    )


def with_token_counts(queryset: QuerySet[Collection]) -> QuerySet[Collection]:
    """``queryset`` with each collection's token counts per kind of status."""
    return queryset.annotate(
        tokens_total=Count("tokens"),
        tokens_done=Count("tokens", filter=Q(tokens__status__in=DONE)),
        tokens_in_progress=Count("tokens", filter=Q(tokens__status__in=IN_PROGRESS)),
        tokens_review=Count("tokens", filter=Q(tokens__status=Status.NEEDS_REVIEW)),
        tokens_failed=Count("tokens", filter=Q(tokens__status=Status.FAILED)),
    )


def webhook_deliveries_url(collection: Collection) -> str:
    """The webhook delivery list (mintsite's admin) filtered to the collection."""
    try:
        base = reverse("admin:mintsite_webhookdelivery_changelist")
    except NoReverseMatch:  # registered by the webhooks app; the URL is the admin's convention
        base = reverse("admin:index") + "mintsite/webhookdelivery/"
    return f"{base}?subscription__collection__id__exact={collection.pk}"


def rarity_table_html(table: Any, max_supply: int) -> str | SafeString:
    """Categories, options and their configured probabilities, as a table."""
    from generation.traits import trait_probabilities, validate_rarity

    problems = validate_rarity(table, max_supply=max_supply)
    if problems:
        return format_html(
            "The stored table is invalid: {}",
            format_html_join("; ", "{}", ((p,) for p in problems)),
        )
    if table["mode"] == "none":
        return "No traits (mode none)."
    probabilities = trait_probabilities(table, max_supply=max_supply)
    key = "weight" if table["mode"] == "weighted" else "quota"
    rows = []
    for category in table["categories"]:
        for i, option in enumerate(category["options"]):
            p = probabilities[category["name"]][option["name"]]
            rows.append(
                format_html(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    category["name"] if i == 0 else "",
                    ("yes" if category.get("verify") else "no") if i == 0 else "",
                    option["name"],
                    option["prompt"],
                    option[key],
                    f"{p:.2%}",
                )
            )
    return format_html(
        '<table class="rarity-preview"><thead><tr><th>category</th><th>verify</th>'
        "<th>option</th><th>prompt fragment</th><th>{}</th><th>probability</th></tr></thead>"
        "<tbody>{}</tbody></table><p>Mode {}; probabilities are the configured ones "
        "(weighted: weight / category total; quota: quota / max supply {}).</p>",
        key,
        mark_safe("".join(rows)),  # each row was escaped by format_html
        table["mode"],
        max_supply,
    )
