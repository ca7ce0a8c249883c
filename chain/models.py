"""Listener cursors and the wallets whose nonces this backend owns."""

from __future__ import annotations

from django.db import models

from generation.models import Collection


class ChainCursor(models.Model):
    """The last block of a collection's contract that the listener has fully processed."""

    collection = models.OneToOneField(Collection, on_delete=models.CASCADE, related_name="cursor")
    block_number = models.PositiveBigIntegerField()
    block_hash = models.CharField(max_length=66)
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
