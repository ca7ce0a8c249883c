"""Listener cursors and the wallets whose nonces this backend owns."""

from __future__ import annotations

from django.db import models

from generation.models import Collection


class Chain(models.Model):
    """An EVM chain the listener follows, and how far it trusts each block."""

    class Tag(models.TextChoices):
        NONE = "", "a depth of blocks"
        SAFE = "safe", "the node's safe block"
        FINALIZED = "finalized", "the node's finalized block"

    chain_id = models.PositiveBigIntegerField(unique=True)
    name = models.CharField(max_length=100, blank=True)
    rpc_urls = models.TextField(help_text="JSON-RPC endpoints, comma-separated, tried in order")
    confirmations = models.PositiveIntegerField(
        default=2, help_text="Blocks on top of a mint's block before it is processed"
    )
    confirmation_tag = models.CharField(
        max_length=10,
        choices=Tag.choices,
        blank=True,
        help_text="Process up to the node's safe or finalized block instead of a depth",
    )
    finality_depth = models.PositiveIntegerField(
        default=64,
        help_text="Blocks kept for reorg checks; a reorg deeper than this stops the listener",
    )
    log_range = models.PositiveIntegerField(
        default=2000, help_text="Largest eth_getLogs block range to ask for"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name or f"chain {self.chain_id}"

    def urls(self) -> list[str]:
        return [url.strip() for url in self.rpc_urls.split(",") if url.strip()]


class ChainCursor(models.Model):
    """The last block of a collection's contract that the listener has fully processed, and the
    hashes of the blocks before it that may still be reorganised away."""

    collection = models.OneToOneField(Collection, on_delete=models.CASCADE, related_name="cursor")
    block_number = models.PositiveBigIntegerField()
    block_hash = models.CharField(max_length=66)
    # [[number, hash], ...] ascending, the last `finality_depth` blocks up to block_number
    recent_blocks = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.collection.slug} @ {self.block_number}"


class Wallet(models.Model):
    """A sending account; its row is locked while a nonce is taken, so one sender owns it."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    next_nonce = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "address"], name="wallet_unique_address")
        ]

    def __str__(self) -> str:
        return f"{self.address} on {self.chain_id}"
