"""Listener cursors and the wallets whose nonces this backend owns."""

from __future__ import annotations

from django.db import models

from generation.models import Collection, Token


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


class TokenTransfer(models.Model):
    """A confirmed ``Transfer`` of a minted token (not the mint itself), as the listener read it.

    The token's ``owner`` is the ``to_address`` of its latest transfer; a reorg that removes
    transfers deletes them and sets the owner back (chain/listener.py)."""

    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="transfers")
    from_address = models.CharField(max_length=42)
    to_address = models.CharField(max_length=42)
    block_number = models.PositiveBigIntegerField()
    block_hash = models.CharField(max_length=66)
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["block_number", "log_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["token", "tx_hash", "log_index"], name="transfer_recorded_once"
            )
        ]
        indexes = [models.Index(fields=["token", "block_number", "log_index"])]

    def __str__(self) -> str:
        return f"{self.token}: {self.from_address} -> {self.to_address} in {self.block_number}"


class Wallet(models.Model):
    """A sending account; its row is locked while a nonce is taken, so one sender owns it."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    next_nonce = models.PositiveBigIntegerField(default=0)
    # The chain's block 0 hash (and, on anvil, its instance id) as the sender last saw it: a
    # different one means the chain was reset (a restarted anvil) or the endpoint serves another
    # chain (chain.sender._wallet).
    chain_fingerprint = models.CharField(max_length=140, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "address"], name="wallet_unique_address")
        ]

    def __str__(self) -> str:
        return f"{self.address} on {self.chain_id}"


class OutgoingTransaction(models.Model):
    """One signed attempt at a transaction from a wallet this backend owns.

    The row, with the signed bytes, is committed before the bytes are broadcast, so after a crash
    the transaction is found by hash or rebroadcast as it was, never signed anew. A replacement
    (higher fees, same nonce and calldata) or a nonce filler is a new row with the next
    ``attempt``; of all the attempts at one nonce, at most one can ever be mined.
    """

    class Status(models.TextChoices):
        SIGNED = "SIGNED", "signed and committed, not yet accepted by a node"
        PENDING = "PENDING", "accepted by a node, not yet mined"
        MINED = "MINED", "mined, waiting for its confirmations"
        CONFIRMED = "CONFIRMED", "mined with status 1 and confirmed"
        REVERTED = "REVERTED", "mined with status 0 and confirmed"
        REPLACED = "REPLACED", "superseded by a later attempt at the same nonce"
        FAILED = "FAILED", "its nonce was used by a transaction this backend did not sign"

    # Removing a wallet (forget_chain on the embedded chain) removes its transactions: signed
    # bytes of a chain that was reset must never be rebroadcast onto its successor.
    wallet = models.ForeignKey(Wallet, on_delete=models.CASCADE, related_name="transactions")
    chain_id = models.PositiveBigIntegerField()
    sender = models.CharField(max_length=42)
    nonce = models.PositiveBigIntegerField()
    attempt = models.PositiveIntegerField(default=0)
    purpose = models.CharField(max_length=255, blank=True)
    to = models.CharField(max_length=42)
    data = models.TextField(blank=True, help_text="Calldata, 0x-prefixed hex")
    value = models.CharField(max_length=78, default="0", help_text="Wei, as a decimal string")
    gas = models.PositiveBigIntegerField()
    max_fee_per_gas = models.PositiveBigIntegerField()
    max_priority_fee_per_gas = models.PositiveBigIntegerField()
    raw_transaction = models.BinaryField()
    tx_hash = models.CharField(max_length=66)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SIGNED)
    is_filler = models.BooleanField(
        default=False,
        help_text="A 0-value transfer to itself that used the nonce of a transaction the node refused",
    )
    replaced_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces"
    )
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    block_hash = models.CharField(max_length=66, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    broadcast_at = models.DateTimeField(null=True, blank=True)
    mined_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["wallet", "nonce", "attempt"], name="outgoing_tx_unique_attempt"
            ),
        ]
        indexes = [
            # the sender's every pass reads a wallet's unfinished transactions
            models.Index(fields=["wallet", "status"], name="outgoing_tx_wallet_status"),
            # an operator's lookup by hash; not unique, because a chain reset under the same
            # chain id (anvil) can see the very same signed bytes again
            models.Index(fields=["tx_hash"], name="outgoing_tx_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose or 'tx'} {self.tx_hash} (nonce {self.nonce}, attempt {self.attempt})"
