"""Allowlists in the admin: a manager uploads a CSV of ``address,allowance`` for one of her
collections; the backend builds the Merkle tree, stores every address's proof and pins the tree
to IPFS (sales/building.py). Every bad line is shown on the form with its number and what is
wrong. An allowlist never changes once made: a corrected list is uploaded under a new name.

Committing a list's root to the contract is the sale phase's part; the root is on the page.
docs/admin.md#allowlists.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from ipfs.errors import IpfsError
from mintsite.admin.integrations import ManagedByCollection, ManagedCollectionFilter
from mintsite.admin.permissions import managed_collections
from sales.allowlist import MAX_BYTES, MAX_ENTRIES, Entry, parse_allowlist
from sales.building import create_allowlist, pin_allowlist
from sales.errors import InvalidAllowlist
from sales.models import Allowlist, AllowlistEntry


class AllowlistUploadForm(forms.ModelForm):
    csv_file = forms.FileField(
        label="CSV file",
        help_text=f"One address,allowance a line (an address,allowance header line may come "
        f"first); at most {MAX_ENTRIES:,} entries",
    )

    class Meta:
        model = Allowlist
        fields = ["collection", "name"]

    def clean_csv_file(self) -> list[Entry]:
        upload = self.cleaned_data["csv_file"]
        if upload.size is not None and upload.size > MAX_BYTES:
            raise forms.ValidationError(
                f"the file is larger than {MAX_BYTES:,} bytes: split the list"
            )
        try:
            return parse_allowlist(upload.read(MAX_BYTES + 1))
        except InvalidAllowlist as exc:
            raise forms.ValidationError([str(p) for p in exc.problems]) from None


@admin.register(Allowlist)
class AllowlistAdmin(ManagedByCollection):
    # upload and look; deleting one (whose root may be on-chain) is the superuser's
    manager_may = frozenset({"view", "add"})
    form = AllowlistUploadForm
    list_display = ["name", "collection", "entry_count", "short_root", "pinned", "created_at"]
    list_filter = [ManagedCollectionFilter]
    search_fields = ["name", "root", "cid"]
    list_select_related = ["collection"]
    actions = ["pin"]
    SHOWN = ["collection", "name", "root", "entry_count", "tree_link", "created_at"]

    @admin.display(description="root")
    def short_root(self, obj: Allowlist) -> str:
        return f"{obj.root[:10]}…{obj.root[-8:]}"

    @admin.display(description="pinned", boolean=True)
    def pinned(self, obj: Allowlist) -> bool:
        return bool(obj.cid)

    @admin.display(description="CID")
    def tree_link(self, obj: Allowlist) -> str:
        if not obj.cid:
            return "not pinned yet: use the action 'Pin to IPFS'"
        return format_html('<a href="{}/{}">{}</a>', settings.IPFS_GATEWAY_URL, obj.cid, obj.cid)

    def get_fields(self, request: HttpRequest, obj: Allowlist | None = None) -> list[Any]:
        return ["collection", "name", "csv_file"] if obj is None else self.SHOWN

    def get_readonly_fields(self, request: HttpRequest, obj: Allowlist | None = None) -> list[str]:
        return [] if obj is None else self.SHOWN

    def save_model(self, request: HttpRequest, obj: Allowlist, form: Any, change: bool) -> None:
        if change:  # nothing on an allowlist changes
            return
        try:
            made = create_allowlist(obj.collection, obj.name, form.cleaned_data["csv_file"])
        except IpfsError as exc:
            made = Allowlist.objects.get(collection=obj.collection, name=obj.name)
            messages.warning(
                request,
                f"Stored, but not pinned to IPFS ({exc}): proofs are served; pin it later with "
                "the action 'Pin to IPFS'.",
            )
        obj.pk, obj.root, obj.entry_count = made.pk, made.root, made.entry_count
        obj.tree_json, obj.cid, obj.created_at = made.tree_json, made.cid, made.created_at
        messages.info(
            request,
            f"{made.entry_count} address(es); root {made.root}"
            + (f"; pinned as {made.cid}" if made.cid else ""),
        )

    @admin.action(description="Pin to IPFS (again)", permissions=["view"])
    def pin(self, request: HttpRequest, queryset: QuerySet[Allowlist]) -> None:
        pinned = 0
        for allowlist in queryset.select_related("collection"):
            try:
                pin_allowlist(allowlist)
            except IpfsError as exc:
                messages.error(request, f"{allowlist}: not pinned ({exc})")
                continue
            pinned += 1
        messages.success(request, f"{pinned} allowlist(s) pinned")


class AllowlistFilter(admin.SimpleListFilter):
    """By allowlist, offering only the lists of collections the user manages."""

    title = "allowlist"
    parameter_name = "allowlist"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        lists = Allowlist.objects.filter(collection__in=managed_collections(request.user))
        lists = lists.select_related("collection").order_by("collection__slug", "name")
        return [(str(a.pk), str(a)) for a in lists]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(allowlist_id=int(value))
        return queryset


@admin.register(AllowlistEntry)
class AllowlistEntryAdmin(ManagedByCollection):
    """Look an address up: is it on a list, with what allowance and proof."""

    collection_path = "allowlist__collection"
    list_display = ["address", "allowance", "allowlist"]
    list_filter = [AllowlistFilter]
    search_fields = ["address"]
    list_select_related = ["allowlist__collection"]
    readonly_fields = ["allowlist", "address", "allowance", "proof"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # entries come from an uploaded list

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        # addresses are stored checksummed; a search in any case finds them
        if search_term.strip():
            return queryset.filter(address__iexact=search_term.strip()), False
        return queryset, False
