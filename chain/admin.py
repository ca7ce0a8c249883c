from django.contrib import admin

from chain.models import Chain, ChainCursor, Wallet


@admin.register(Chain)
class ChainAdmin(admin.ModelAdmin):
    list_display = [
        "chain_id",
        "name",
        "rpc_urls",
        "confirmations",
        "confirmation_tag",
        "finality_depth",
    ]


@admin.register(ChainCursor)
class ChainCursorAdmin(admin.ModelAdmin):
    list_display = ["collection", "block_number", "block_hash", "updated_at"]


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ["address", "chain_id", "next_nonce", "updated_at"]
