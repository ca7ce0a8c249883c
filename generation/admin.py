"""The admin that runs a collection: its config and rarity table, the freeze, the token pipeline.

Who sees what: a superuser sees every collection; any other staff user sees, changes and runs
only the collections that list them in ``managers``, and only those collections' tokens and
events (querysets, object permissions, list filters and the image view all go through
:func:`managed_collections`). A manager needs no model permissions of Django's own: being in
``managers`` is the grant. Adding or deleting a collection, and choosing its managers, its
chain and its contract, are the superuser's.

docs/admin.md is the manager's guide; generation/review.py says what approve, re-render and
retry do to a token.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from generation import admin_views, review
from generation.forms import CollectionForm
from generation.models import FROZEN_FIELDS, Collection, Token, TokenEvent

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


def managed_collections(user: Any) -> QuerySet[Collection]:
    """The collections ``user`` may see and run in the admin."""
    if not (user.is_active and user.is_staff):
        return Collection.objects.none()
    if user.is_superuser:
        return Collection.objects.all()
    return Collection.objects.filter(managers=user)


def manages(user: Any, collection_pk: int | None = None) -> bool:
    """Whether ``user`` manages that collection (any collection when None)."""
    collections = managed_collections(user)
    if collection_pk is not None:
        collections = collections.filter(pk=collection_pk)
    return collections.exists()


def _who(request: HttpRequest) -> str:
    return request.user.get_username()


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
        frozen = bool(obj and obj.config_digest)
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
                "Chain",
                {
                    "fields": [
                        "chain_id",
                        "contract_address",
                        "deployment_block",
                        "config_digest",
                        "contract_uri",
                    ]
                },
            ),
            ("Pipeline", {"fields": ["pipeline_links"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Collection | None = None) -> list[str]:
        readonly = ["config_digest", "contract_uri", "rarity_preview", "pipeline_links"]
        if not request.user.is_superuser:
            # who runs it, and which contract it is, are the operator's to set
            readonly += ["managers", "slug", "chain_id", "contract_address", "deployment_block"]
        if obj is not None and obj.config_digest:
            readonly += FROZEN_FIELDS
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

    # --- freeze from the change page: "Save and freeze on-chain"

    def render_change_form(self, request: HttpRequest, context: dict, *args: Any, **kwargs: Any):
        obj = kwargs.get("obj")
        context["can_freeze"] = bool(
            obj is not None
            and obj.pk
            and not obj.config_digest
            and self.has_change_permission(request, obj)
        )
        return super().render_change_form(request, context, *args, **kwargs)

    def response_change(self, request: HttpRequest, obj: Collection) -> HttpResponse:
        if "_freeze" in request.POST:
            self._freeze_one(request, obj)
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    # --- actions

    @admin.action(description="Freeze the config on-chain (commit its digest, lock the fields)")
    def freeze(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        for collection in queryset.order_by("slug"):
            self._freeze_one(request, collection)

    freeze.allowed_permissions = ("change",)

    def _freeze_one(self, request: HttpRequest, collection: Collection) -> None:
        from requests.exceptions import RequestException
        from web3.exceptions import Web3Exception

        from chain.chains import web3_for
        from chain.contract import bind
        from chain.deployment import freeze_collection
        from chain.errors import ChainError
        from chain.wallets import deployer

        collection = Collection.objects.get(pk=collection.pk)  # without the list's annotations
        label = collection.slug
        if collection.config_digest:
            self.message_user(
                request,
                f"{label}: already frozen, config digest {collection.config_digest}; "
                "nothing was sent",
                messages.WARNING,
            )
            return
        try:
            collection.full_clean()
        except ValidationError as exc:
            problems = [f"{field}: {m}" for field, ms in exc.message_dict.items() for m in ms]
            self.message_user(
                request,
                f"{label}: not frozen, its config is invalid: " + "; ".join(problems),
                messages.ERROR,
            )
            return
        try:
            w3 = web3_for(collection.chain_id)
            if w3.eth.chain_id != collection.chain_id:
                raise ImproperlyConfigured(
                    f"the RPC endpoints of chain {collection.chain_id} serve chain "
                    f"{w3.eth.chain_id}"
                )
            if not w3.eth.get_code(collection.contract_address):
                raise ImproperlyConfigured(
                    f"there is no contract at {collection.contract_address} on chain "
                    f"{collection.chain_id}"
                )
            contract = bind(w3, collection.contract_address)
            on_chain = bytes(contract.functions.configDigest().call())
            if on_chain != bytes(32):
                raise ImproperlyConfigured(
                    f"the contract already holds config digest 0x{on_chain.hex()}, which this "
                    "database does not record; nothing was sent (check the collection's "
                    "contract address)"
                )
            start = w3.eth.block_number + 1
            freeze_collection(w3, deployer(collection.chain_id).key.to_0x_hex(), collection)
            logs = contract.events.ConfigFrozen().get_logs(from_block=start)
        except (ChainError, ImproperlyConfigured, Web3Exception, RequestException, OSError) as exc:
            self.message_user(
                request,
                f"{label}: not frozen: {type(exc).__name__}: {exc}",
                messages.ERROR,
            )
            return
        tx = logs[-1]["transactionHash"].to_0x_hex() if logs else "(transaction not found)"
        self.message_user(
            request,
            f"{label}: frozen. Config digest {collection.config_digest} committed on-chain in "
            f"transaction {tx}; contract metadata {collection.contract_uri}. What shapes the "
            "output can no longer change, and minting is open.",
            messages.SUCCESS,
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
                request, f"{word.capitalize()} by {_who(request)}: {_names(changed)}: {note}."
            )
        if skipped:
            self.message_user(request, f"Skipped: {_names(skipped)}.", messages.WARNING)


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


# --------------------------------------------------------------------------------------------
# Tokens and their history


class ManagedByCollection:
    """Read-only admin of rows that belong to a collection through ``collection_path``."""

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

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # tokens come from the chain, their events from the pipeline

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # read-only: tokens change through the actions, never by hand

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "collection":
            kwargs["queryset"] = managed_collections(request.user)
        elif db_field.name == "token":
            kwargs["queryset"] = Token.objects.filter(
                collection__in=managed_collections(request.user)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]


class TokenEventInline(admin.TabularInline):
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

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
    inlines = [TokenEventInline]
    change_form_template = "admin/generation/token/change_form.html"
    fieldsets = [
        (None, {"fields": ["collection", "token_id", "owner", "stage", "failure_reason"]}),
        ("Image", {"fields": ["image", "attempts", "image_cid", "metadata_cid", "token_uri"]}),
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

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(
            lambda request, pk, attempt: admin_views.token_render(request, self, pk, attempt)
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
            stage = review.retry(token, _who(request))
            waits = ", waiting: the collection is paused" if token.collection.paused else ""
            return f"#{token.token_id} ({stage} stage{waits})"

        self._each(request, queryset, run, "Sent back to the stage that failed")

    retry.allowed_permissions = ("manage",)

    @admin.action(description="Approve the rejected image of tokens in review")
    def approve(self, request: HttpRequest, queryset: QuerySet[Token]) -> None:
        def run(token: Token) -> str:
            attempt = review.queue_approval(token, _who(request))
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
            attempts = review.queue_rerender(token, _who(request))
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
            except review.ReviewRefused as exc:
                skipped.append(f"{label}: {exc}")
        if ok:
            self.message_user(request, f"{done} by {_who(request)}: {_names(ok)}.")
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
        # uniqueness: the nearest earlier image must stay BELOW the threshold
        passed = score < limit if name == "uniqueness_max" else score >= limit
        if name.endswith(":margin"):
            passed = score > 0 and score >= limit
        relation = "<" if name == "uniqueness_max" else "≥"
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
