"""What a collection sells with beyond the contract's fixed price: for now, allowlists.

An :class:`Allowlist` is a Merkle tree of (address, allowance) built the way
``@openzeppelin/merkle-tree`` builds it (sales/merkle.py): its ``root`` is what the contract's
allowlist phase is given, and each :class:`AllowlistEntry` keeps its address's proof for the
API. ``tree_json`` is the tree's ``StandardMerkleTree.dump()``, byte for byte what is pinned to
IPFS under ``cid``, so anyone can load it with OpenZeppelin's library and check every proof.
sales/building.py creates them; nothing here changes once created.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

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
