"""What a collection sells with beyond the contract's fixed price: allowlists, sale phases, and
the on-chain actions a manager asks for.

An :class:`Allowlist` is a Merkle tree of (address, allowance) built the way
``@openzeppelin/merkle-tree`` builds it (sales/merkle.py): its ``root`` is what the contract's
allowlist phase is given, and each :class:`AllowlistEntry` keeps its address's proof for the
API. ``tree_json`` is the tree's ``StandardMerkleTree.dump()``, byte for byte what is pinned to
IPFS under ``cid``, so anyone can load it with OpenZeppelin's library and check every proof.
sales/building.py creates them; nothing here changes once created.

A :class:`SalePhase` is what the contract's ``setPhase`` is given, in the manager's units (times,
wei, an allowlist). A :class:`SaleAction` is one on-chain control a manager asked for (schedule a
phase, pause or unpause minting, set the base price, airdrop from the reserve, withdraw): the
admin records it, a worker on its own queue holding the sales key (the contract's
``SALES_ROLE``) sends it through the sender (sales/tasks.py), and the row keeps its transaction
and outcome.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from chain.sale_phase import ZERO_ROOT, PhaseStruct
from generation.models import Collection


def validate_not_only_digits(value: str) -> None:
    # the API names an allowlist by id or by name, so a name must not read as an id
    if value.isdigit():
        raise ValidationError("a name must not be only digits (the API would read it as an id)")


class Allowlist(models.Model):
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="allowlists")
    name = models.SlugField(
        max_length=64,
        validators=[validate_not_only_digits],
        help_text="Letters, digits, - and _ (not only digits): the API's and the mint page's "
        "name for it, unique in the collection",
    )
    root = models.CharField(
        max_length=66, help_text="The Merkle root, 0x and 64 hex digits: what the contract is given"
    )
    entry_count = models.PositiveIntegerField()
    tree_json = models.TextField(
        help_text="StandardMerkleTree.dump() (format standard-v1), exactly the bytes pinned"
    )
    cid = models.CharField(
        "CID", max_length=100, blank=True, help_text="The pinned tree's CID; empty until pinned"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["collection", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["collection", "name"], name="allowlist_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.collection.slug}/{self.name}"

    @property
    def root_bytes(self) -> bytes:
        """The root as the 32 bytes a contract call takes (bytes32)."""
        return bytes.fromhex(self.root.removeprefix("0x"))


class AllowlistEntry(models.Model):
    allowlist = models.ForeignKey(Allowlist, on_delete=models.CASCADE, related_name="entries")
    address = models.CharField(max_length=42, help_text="Checksummed 0x address")
    allowance = models.PositiveBigIntegerField(validators=[MinValueValidator(1)])
    proof = models.JSONField(help_text="The sibling hashes from the leaf to the root, 0x hex")

    class Meta:
        ordering = ["allowlist", "id"]
        constraints = [
            # also the index the API's proof lookup, by (allowlist, address), runs on
            models.UniqueConstraint(
                fields=["allowlist", "address"], name="allowlist_entry_unique_address"
            )
        ]
        verbose_name_plural = "allowlist entries"

    def __str__(self) -> str:
        return f"{self.address} × {self.allowance}"


# uint128: the contract's price fields
MAX_WEI = 2**128 - 1
MAX_PHASES = 16


def wei_field(help_text: str, **kwargs: Any) -> models.DecimalField:
    """A wei amount: a whole number up to uint128 (39 digits), exact in PostgreSQL's numeric."""
    return models.DecimalField(
        max_digits=39,
        decimal_places=0,
        validators=[MinValueValidator(0), MaxValueValidator(MAX_WEI)],
        help_text=help_text,
        **kwargs,
    )


class SalePhase(models.Model):
    """One phase of a collection's sale, as the contract's ``Phase`` struct holds it.

    ``position`` is its phase id on-chain: phases run in position order, without overlap. It is
    scheduled (sent to the contract) by a :class:`SaleAction`; a phase that has started can no
    longer change, on-chain or here.
    """

    class Kind(models.TextChoices):
        FIXED = "fixed", "fixed price"
        DUTCH = "dutch", "Dutch auction (settled)"

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="sale_phases")
    position = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(MAX_PHASES - 1)],
        help_text="The phase's id on-chain, from 0: phases run in this order and must not overlap",
    )
    name = models.CharField(max_length=64, help_text="What the mint page calls it, e.g. Allowlist")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.FIXED)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    price_wei = wei_field("The price per token in wei; a Dutch auction's start price")
    floor_price_wei = wei_field("A Dutch auction's lowest price, in wei", default=0)
    drop_per_step_wei = wei_field(
        "How much a Dutch auction's price falls each step, in wei", default=0
    )
    step_seconds = models.PositiveIntegerField(
        default=0, help_text="Seconds between a Dutch auction's price steps"
    )
    max_per_wallet = models.PositiveIntegerField(
        default=0, help_text="Tokens one wallet may mint in this phase; 0: no limit"
    )
    allowlist = models.ForeignKey(
        Allowlist,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="phases",
        help_text="Only this list's addresses, each up to its allowance; empty: open to anyone",
    )

    class Meta:
        ordering = ["collection", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["collection", "position"], name="sale_phase_unique_position"
            )
        ]

    def __str__(self) -> str:
        return f"{self.collection.slug} phase {self.position}: {self.name}"

    def clean(self) -> None:
        problems: dict[str, str] = {}
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            problems["ends_at"] = "the phase must end after it starts"
        if self.kind == self.Kind.DUTCH:
            if self.step_seconds <= 0:
                problems["step_seconds"] = "a Dutch auction needs the seconds between price steps"
            prices = (self.floor_price_wei, self.price_wei)
            if None not in prices and prices[0] >= prices[1]:
                problems["floor_price_wei"] = "the floor must be below the start price"
            if not self.drop_per_step_wei:
                problems["drop_per_step_wei"] = "a Dutch auction's price must drop each step"
        allowlist = self.allowlist if self.allowlist_id is not None else None
        if (
            allowlist is not None
            and self.collection_id is not None
            and allowlist.collection_id != self.collection_id
        ):
            problems["allowlist"] = "the allowlist belongs to another collection"
        if problems:
            raise ValidationError(problems)

    def as_struct(self) -> PhaseStruct:
        """The contract's ``Phase`` struct, as ``setPhase`` takes it."""
        dutch = self.kind == self.Kind.DUTCH
        return PhaseStruct.of(
            int(self.starts_at.timestamp()),
            int(self.ends_at.timestamp()),
            price=int(self.price_wei),
            floor_price=int(self.floor_price_wei) if dutch else None,
            step_seconds=self.step_seconds if dutch else 0,
            drop_per_step=int(self.drop_per_step_wei) if dutch else 0,
            max_per_wallet=self.max_per_wallet,
            merkle_root=self.allowlist.root_bytes if self.allowlist else ZERO_ROOT,
        )


class SaleAction(models.Model):
    """An on-chain control of the sale, asked for by a manager and sent by the sale worker.

    ``params`` holds what the call needs, in JSON (addresses as checksummed text, wei as decimal
    text). ``state``: QUEUED when asked, SENDING while the worker has it, then DONE with its
    transaction, or FAILED with the reason (a revert names the contract's error).
    """

    class Kind(models.TextChoices):
        SET_PHASE = "set_phase", "schedule a phase"
        DROP_LAST_PHASE = "drop_last_phase", "remove the last phase"
        PAUSE = "pause", "pause minting"
        UNPAUSE = "unpause", "unpause minting"
        SET_PRICE = "set_price", "set the base price"
        AIRDROP = "airdrop", "airdrop from the reserve"
        WITHDRAW = "withdraw", "withdraw to the payee"

    class State(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        DONE = "done"
        FAILED = "failed"

    collection = models.ForeignKey(
        Collection, on_delete=models.CASCADE, related_name="sale_actions"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    params = models.JSONField(default=dict, blank=True)
    phase = models.ForeignKey(
        SalePhase, on_delete=models.SET_NULL, null=True, blank=True, related_name="actions"
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    requested_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    tx_hash = models.CharField("transaction", max_length=66, blank=True)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["collection", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.collection.slug}: {self.summary()}"

    def summary(self) -> str:
        """What was asked, in a line."""
        p = self.params
        match self.kind:
            case self.Kind.SET_PHASE:
                return f"schedule phase {p.get('position')} ({p.get('name', '')})"
            case self.Kind.SET_PRICE:
                return f"set the base price to {p.get('price_wei')} wei"
            case self.Kind.AIRDROP:
                drops = p.get("recipients", [])
                total = sum(int(q) for _, q in drops)
                return f"airdrop {total} token(s) to {len(drops)} address(es)"
        return str(self.get_kind_display())
