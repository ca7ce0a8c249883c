from django.contrib import admin

from generation.models import Collection, Token


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "chain_id", "contract_address", "clip_threshold", "created_at"]
    search_fields = ["slug", "name", "contract_address"]


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    list_display = ["collection", "token_id", "status", "owner", "attempt", "updated_at"]
    list_filter = ["status", "collection"]
    search_fields = ["owner", "mint_tx_hash", "metadata_cid", "image_cid"]
    readonly_fields = [f.name for f in Token._meta.fields]
