"""Running a sale from the admin: phases, and the on-chain controls a manager asks for.

- Sale phases: a manager creates her collection's phases (times, fixed price or Dutch auction,
  per-wallet limit, an allowlist) and schedules them on-chain with the action "Schedule on chain".
- Sale actions: every on-chain control asked for, with its state, transaction and outcome. Each
  collection's sale page (``sale/<collection pk>/``) shows what the contract holds now (phase,
  price, paused, sold, reserve, what a withdrawal would send) and asks for pause, unpause, the
  base price, an airdrop from the reserve, a withdrawal, or removing the last phase. It also
  prepares the contract admin's royalty change (chain/royalty.py: the contract metadata pinned,
  the transactions listed for a multisig) and records the contract URI once the admin sent it.

The web process holds no key: each control is recorded and sent to the sale worker's queue
(sales/actions.py), which signs and sends it (sales/sending.py). docs/admin.md#running-a-sale.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from generation.collection_config import Royalty
from generation.models import Collection
from mintsite.admin.integrations import (
    ManagedByCollection,
    ManagedCollectionFilter,
    managed_collections,
)
from mintsite.admin.permissions import ReadOnly, manages, who
from sales import actions
from sales.actions import SaleActionRefused
from sales.allowlist import parse_allowlist
from sales.errors import InvalidAllowlist
from sales.models import Allowlist, SaleAction, SalePhase

WEI_PER_ETH = Decimal(10**18)
# the sale page's buttons that prepare the contract admin's transactions, or record them
ADMIN_BUTTONS = {"_royalty", "_royalty_align", "_payee", "_record_contract_uri"}


def eth(wei: int | Decimal) -> str:
    """Wei as ETH, without trailing zeros."""
    text = f"{Decimal(wei) / WEI_PER_ETH:f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + " ETH"


@admin.register(SalePhase)
class SalePhaseAdmin(ManagedByCollection):
    manager_may = frozenset({"view", "add", "change"})
    list_display = [
        "position", "name", "collection", "kind", "starts_at", "ends_at", "shown_price",
        "max_per_wallet", "allowlist", "on_chain",
    ]  # fmt: skip
    list_display_links = ["position", "name"]
    list_filter = [ManagedCollectionFilter, "kind"]
    list_select_related = ["collection", "allowlist"]
    actions = ["schedule"]
    FIELDS = [
        "collection", "position", "name", "kind", "starts_at", "ends_at", "price_wei",
        "floor_price_wei", "drop_per_step_wei", "step_seconds", "max_per_wallet", "allowlist",
    ]  # fmt: skip
    fields = tuple(FIELDS)

    @admin.display(description="price")
    def shown_price(self, obj: SalePhase) -> str:
        if obj.kind == SalePhase.Kind.DUTCH:
            return (
                f"{eth(obj.price_wei)} → {eth(obj.floor_price_wei)}, "
                f"−{eth(obj.drop_per_step_wei)} every {obj.step_seconds} s"
            )
        return eth(obj.price_wei)

    @admin.display(description="on chain")
    def on_chain(self, obj: SalePhase) -> str:
        last = obj.actions.filter(kind=SaleAction.Kind.SET_PHASE).first()
        return (
            "not scheduled"
            if last is None
            else f"{last.get_state_display()} ({last.created_at:%Y-%m-%d %H:%M})"
        )

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "allowlist":
            kwargs["queryset"] = Allowlist.objects.filter(
                collection__in=managed_collections(request)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: SalePhase | None = None) -> list[str]:
        # a started phase that is on-chain is what the contract sells by: it no longer changes
        if obj is not None and obj.starts_at <= timezone.now() and _scheduled(obj):
            return list(self.FIELDS)
        return []

    @admin.action(description="Schedule on chain (send setPhase)", permissions=["change"])
    def schedule(self, request: HttpRequest, queryset: QuerySet[SalePhase]) -> None:
        for phase in queryset.order_by("collection__slug", "position"):
            try:
                action = actions.schedule_phase(phase, by=who(request))
            except SaleActionRefused as exc:
                self.message_user(request, f"not scheduled: {exc}", messages.ERROR)
                continue
            self.message_user(
                request, f"{phase}: queued for the sale worker ({_action_link(action)})"
            )


def _scheduled(phase: SalePhase) -> bool:
    return phase.actions.filter(
        kind=SaleAction.Kind.SET_PHASE, state=SaleAction.State.DONE
    ).exists()


def _action_link(action: SaleAction) -> str:
    return f"action {action.pk}"


class AirdropForm(forms.Form):
    recipients = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text="One address,quantity a line; counted against the reserve",
    )

    def clean_recipients(self) -> list[tuple[str, int]]:
        try:
            entries = parse_allowlist(self.cleaned_data["recipients"].encode(), count="quantity")
        except InvalidAllowlist as exc:
            raise forms.ValidationError([str(p) for p in exc.problems]) from None
        return [(e.address, e.allowance) for e in entries]


class PriceForm(forms.Form):
    price_eth = forms.CharField(
        label="Base price (ETH)", help_text="What a mint costs while no phase is scheduled"
    )

    def clean_price_eth(self) -> int:
        text = self.cleaned_data["price_eth"].strip()
        try:
            wei = Decimal(text) * WEI_PER_ETH
        except InvalidOperation:
            raise forms.ValidationError(f"{text!r} is not a number of ETH") from None
        if wei < 0 or wei != wei.to_integral_value():
            raise forms.ValidationError("the price must be 0 or more, in at most 18 decimals")
        return int(wei)


class RoyaltyForm(forms.Form):
    receiver = forms.CharField(
        label="Royalty receiver", max_length=42, help_text="The address the royalty is paid to"
    )
    basis_points = forms.CharField(
        label="Royalty (basis points)", help_text="100 basis points are 1 % of a sale; 0 pays none"
    )

    def clean(self) -> dict[str, Any]:
        from chain.royalty import RoyaltyRefused, check_royalty

        data = super().clean() or {}
        if "receiver" in data and "basis_points" in data:
            try:
                data["royalty"] = check_royalty(data["receiver"].strip(), data["basis_points"])
            except RoyaltyRefused as exc:
                raise forms.ValidationError(str(exc)) from None
        return data


class PayeeForm(forms.Form):
    payee = forms.CharField(
        label="Payee",
        max_length=42,
        help_text="The address each withdrawal sends the proceeds to (a payment split's, say)",
    )

    def clean_payee(self) -> str:
        from chain.payee import PayeeRefused, check_payee

        try:
            return check_payee(self.cleaned_data["payee"])
        except PayeeRefused as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(SaleAction)
class SaleActionAdmin(ReadOnly, ManagedByCollection):
    manager_may = frozenset({"view"})
    list_display = [
        "created_at", "collection", "summary", "state", "transaction", "error", "requested_by",
    ]  # fmt: skip
    list_filter = [ManagedCollectionFilter, "state", "kind"]
    list_select_related = ["collection"]
    SHOWN = [
        "collection", "kind", "summary", "params", "phase", "state", "requested_by", "created_at",
        "finished_at", "transaction", "block_number", "error",
    ]  # fmt: skip
    readonly_fields = SHOWN
    fields = tuple(SHOWN)

    @admin.display(description="what")
    def summary(self, obj: SaleAction) -> str:
        return obj.summary()

    @admin.display(description="transaction")
    def transaction(self, obj: SaleAction) -> str:
        return format_html("<code>{}</code>", obj.tx_hash) if obj.tx_hash else "—"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "sale_pages": [
                (c.slug, reverse("admin:sales_sale_page", args=[c.pk]))
                for c in managed_collections(request).exclude(contract_address="").order_by("slug")
            ],
        }
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list:
        return [
            path(
                "sale/<int:pk>/",
                self.admin_site.admin_view(self.sale_view),
                name="sales_sale_page",
            ),
            *super().get_urls(),
        ]

    def sale_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The collection's sale: what the contract holds, and the controls."""
        collection = get_object_or_404(managed_collections(request), pk=pk)
        if not manages(request.user, collection.pk):
            raise PermissionDenied
        price_form, airdrop_form = PriceForm(), AirdropForm()
        royalty_form, payee_form = RoyaltyForm(), PayeeForm()
        admin_calls = None
        if request.method == "POST" and ADMIN_BUTTONS & set(request.POST):
            royalty_form, payee_form, admin_calls, done = self._admin_calls(request, collection)
            if done:
                return HttpResponseRedirect(request.path)
        elif request.method == "POST":
            price_form, airdrop_form, done = self._control(request, collection)
            if done:
                return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Sale of {collection.slug}",
            "opts": self.model._meta,
            "collection": collection,
            "state": sale_state(collection),
            "phases": SalePhase.objects.filter(collection=collection).select_related("allowlist"),
            "recent": SaleAction.objects.filter(collection=collection)[:20],
            "price_form": price_form,
            "airdrop_form": airdrop_form,
            "royalty_form": royalty_form,
            "payee_form": payee_form,
            "admin_calls": [call.as_dict() for call in admin_calls or ()],
        }
        return TemplateResponse(request, "admin/sales/sale.html", context)

    def _admin_calls(
        self, request: HttpRequest, collection: Collection
    ) -> tuple[RoyaltyForm, PayeeForm, list | None, bool]:
        """The contract admin's transactions for a royalty change, for contract metadata brought
        in line with the royalty paid (``royalty_change``: pinned here), or for a new payee
        (``payee_change``), for the admin's signers to send; or the chain's contract URI
        recorded once they are sent. Returns the two forms, the calls, and whether it is done."""
        from django.core.exceptions import ImproperlyConfigured
        from requests.exceptions import RequestException
        from web3.exceptions import Web3Exception

        from chain.chains import web3_for
        from chain.errors import ChainError
        from chain.payee import payee_change
        from chain.royalty import record_contract_uri, royalty_change
        from ipfs.errors import IpfsError

        royalty_form, payee_form = RoyaltyForm(), PayeeForm()
        failures = (
            ChainError, IpfsError, ImproperlyConfigured, Web3Exception, RequestException, OSError
        )  # fmt: skip
        if "_record_contract_uri" in request.POST:
            try:
                uri = record_contract_uri(web3_for(collection.chain_id), collection)
            except failures as exc:
                self.message_user(request, f"not recorded: {exc}", messages.ERROR)
                return royalty_form, payee_form, None, False
            self.message_user(
                request, f"{collection.slug}: contract metadata {uri} recorded by {who(request)}"
            )
            return royalty_form, payee_form, None, True
        try:
            if "_payee" in request.POST:
                payee_form = PayeeForm(request.POST)
                if not payee_form.is_valid():
                    return royalty_form, payee_form, None, False
                w3 = web3_for(collection.chain_id)
                calls = payee_change(w3, collection, payee_form.cleaned_data["payee"])
                unchanged = "the contract pays that payee already"
            else:
                royalty = None
                if "_royalty" in request.POST:
                    royalty_form = RoyaltyForm(request.POST)
                    if not royalty_form.is_valid():
                        return royalty_form, payee_form, None, False
                    royalty = royalty_form.cleaned_data["royalty"]
                calls = royalty_change(web3_for(collection.chain_id), collection, royalty)
                unchanged = "the contract pays that royalty and its contract metadata says so"
        except failures as exc:
            self.message_user(request, f"not prepared: {exc}", messages.ERROR)
            return royalty_form, payee_form, None, False
        if not calls:
            self.message_user(
                request, f"{collection.slug}: nothing to send: {unchanged}", messages.WARNING
            )
            return royalty_form, payee_form, None, False
        self.message_user(
            request,
            f"{collection.slug}: {len(calls)} transaction(s) prepared for the contract admin "
            f"(DEFAULT_ADMIN_ROLE) to send, in order, below",
        )
        return royalty_form, payee_form, calls, False

    def _control(
        self, request: HttpRequest, collection: Collection
    ) -> tuple[PriceForm, AirdropForm, bool]:
        by = who(request)
        price_form, airdrop_form = PriceForm(), AirdropForm()
        try:
            if "_pause" in request.POST:
                action = actions.pause_minting(collection, by=by)
            elif "_unpause" in request.POST:
                action = actions.unpause_minting(collection, by=by)
            elif "_withdraw" in request.POST:
                action = actions.withdraw(collection, by=by)
            elif "_drop_last_phase" in request.POST:
                action = actions.drop_last_phase(collection, by=by)
            elif "_set_price" in request.POST:
                price_form = PriceForm(request.POST)
                if not price_form.is_valid():
                    return price_form, airdrop_form, False
                action = actions.set_price(collection, price_form.cleaned_data["price_eth"], by=by)
            elif "_airdrop" in request.POST:
                airdrop_form = AirdropForm(request.POST)
                if not airdrop_form.is_valid():
                    return price_form, airdrop_form, False
                action = actions.airdrop(collection, airdrop_form.cleaned_data["recipients"], by=by)
            else:
                return price_form, airdrop_form, False
        except SaleActionRefused as exc:
            self.message_user(request, f"not sent: {exc}", messages.ERROR)
            return price_form, airdrop_form, False
        self.message_user(
            request,
            f"{collection.slug}: {action.summary()} — queued for the sale worker; its "
            "transaction and outcome show below",
        )
        return price_form, airdrop_form, True


def sale_state(collection: Collection) -> dict[str, Any]:
    """What the collection's contract holds now, read from the chain (reads need no key); an
    ``error`` entry when the chain cannot be read."""
    from requests.exceptions import RequestException
    from web3.exceptions import Web3Exception

    from chain.chains import web3_for
    from chain.contract import bind
    from chain.errors import ChainError
    from chain.freeze import royalty_of
    from chain.royalty import describe

    if not collection.contract_address:
        return {"error": "no contract deployed yet"}
    try:
        w3 = web3_for(collection.chain_id)
        f = bind(w3, collection.contract_address).functions
        open_, phase_id = f.currentPhase().call()
        reserve, reserved = f.reserve().call()
        royalty = royalty_of(w3, collection)
        uri = f.contractURI().call()
        return {
            "paused": f.paused().call(),
            "price": eth(f.price().call()),
            "phases": f.phaseCount().call(),
            "open_phase": phase_id if open_ else None,
            "minted": f.totalSupply().call(),
            "max_supply": f.maxSupply().call(),
            "sale_remaining": f.saleRemaining().call(),
            "reserve": f"{reserved} of {reserve} minted",
            "withdrawable": eth(f.withdrawable().call()),
            "payee": f.payee().call(),
            "royalty": describe(royalty),
            "royalty_note": _royalty_note(collection, royalty, uri),
            "contract_uri": uri,
            # sent by the contract admin, not recorded here yet
            "unrecorded_uri": bool(collection.config_digest and uri != collection.contract_uri),
        }
    except (ChainError, Web3Exception, RequestException, OSError) as exc:
        return {"error": f"the chain could not be read: {exc}"}


def _royalty_note(collection: Collection, royalty: Royalty | None, uri: str) -> str:
    """What to do when the contract metadata states another royalty than the contract pays
    (marketplaces show the metadata's); empty when they agree or nothing is frozen yet."""
    from chain.royalty import RoyaltyRefused, describe, stated_royalty

    if not collection.config_digest or not uri:
        return ""
    try:
        stated = stated_royalty(collection, uri)
    except RoyaltyRefused as exc:
        return f"the contract metadata's royalty could not be checked: {exc}"
    if stated == royalty:
        return ""
    return (
        f"the contract metadata says {describe(stated)}: prepare the transaction that brings it "
        f"in line below, for the contract admin to send (or the admin runs manage.py "
        f"set_royalty {collection.slug}; docs/deploy.md, The sale)"
    )
