"""The chain side in the admin: read-only lists for operators (superusers only).

Collection managers run their collections from the collections' admin; the chains, the
listener's cursors, the backend's wallets and every transaction it sent are the operator's and
change only through the daemons and management commands that own them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from chain.models import Chain, ChainCursor, OutgoingTransaction, Wallet
from mintsite.admin.permissions import ReadOnly


class OperatorReadOnly(ReadOnly, admin.ModelAdmin):
    """Visible to superusers only, and changed by nobody here."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_superuser


@admin.register(Chain)
class ChainAdmin(OperatorReadOnly):
    list_display = [
        "chain_id",
        "name",
        "rpc_urls",
        "confirmations",
        "confirmation_tag",
        "finality_depth",
        "log_range",
        "updated_at",
    ]


@admin.register(ChainCursor)
class ChainCursorAdmin(OperatorReadOnly):
    list_display = ["collection", "block_number", "block_hash", "updated_at"]
    list_select_related = ["collection"]
    exclude = ["recent_blocks"]


@admin.register(Wallet)
class WalletAdmin(OperatorReadOnly):
    list_display = ["address", "chain_id", "next_nonce", "updated_at"]
    list_filter = ["chain_id"]


@admin.register(OutgoingTransaction)
class OutgoingTransactionAdmin(OperatorReadOnly):
    list_display = [
        "tx_hash",
        "purpose",
        "chain_id",
        "sender",
        "nonce",
        "attempt",
        "status",
        "block_number",
        "created_at",
    ]
    list_filter = ["status", "chain_id", "is_filler"]
    search_fields = ["=tx_hash", "=sender", "purpose"]
    exclude = ["raw_transaction"]
    date_hierarchy = "created_at"
