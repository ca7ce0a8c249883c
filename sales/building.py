"""Making an allowlist: parse the uploaded CSV, build the tree, store it with every entry's
proof, and pin the tree's dump to IPFS.

Nothing here sends a transaction: committing ``Allowlist.root`` to the contract is the sale
phase's part (the sale worker), which reads the root from the row.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from generation.models import Collection
from generation.pin_ledger import pin_bytes
from ipfs.backends import Pinner
from sales.allowlist import Entry, parse_allowlist
from sales.merkle import AllowlistTree
from sales.models import Allowlist, AllowlistEntry

__all__ = ["create_allowlist", "create_allowlist_from_csv", "pin_allowlist"]


def create_allowlist_from_csv(
    collection: Collection, name: str, data: bytes, *, pinner: Pinner | None = None
) -> Allowlist:
    """:func:`create_allowlist` from a CSV file's bytes (sales/allowlist.py);
    :class:`~sales.errors.InvalidAllowlist` names every bad line, and nothing is stored."""
    return create_allowlist(collection, name, parse_allowlist(data), pinner=pinner)


def create_allowlist(
    collection: Collection,
    name: str,
    entries: Sequence[Entry],
    *,
    pinner: Pinner | None = None,
) -> Allowlist:
    """Store the allowlist ``name`` of ``collection`` with each entry's proof, then pin the
    tree's dump and record its CID.

    The rows are saved before the pin, so a pinning failure (an
    :class:`~ipfs.errors.IpfsError`, raised to the caller) leaves a complete allowlist whose
    proofs the API already serves and whose ``cid`` is empty; :func:`pin_allowlist` tries again.
    """
    tree = AllowlistTree.of((e.address, e.allowance) for e in entries)
    with transaction.atomic():
        allowlist = Allowlist.objects.create(
            collection=collection,
            name=name,
            root=tree.root,
            entry_count=len(tree),
            tree_json=tree.dump_json().decode(),
        )
        AllowlistEntry.objects.bulk_create(
            (
                AllowlistEntry(
                    allowlist=allowlist,
                    address=leaf.address,
                    allowance=leaf.allowance,
                    proof=proof,
                )
                for leaf, proof in zip(tree.values, tree.proofs(), strict=True)
            ),
            batch_size=1000,
        )
    pin_allowlist(allowlist, pinner=pinner)
    return allowlist


def pin_allowlist(allowlist: Allowlist, *, pinner: Pinner | None = None) -> str:
    """Pin the allowlist's tree (``tree_json``, as stored) and record the CID; pinning the same
    bytes again is harmless, so this is also the retry after a failed pin."""
    cid = pin_bytes(
        allowlist.tree_json.encode(),
        name=f"{allowlist.collection.slug}-allowlist-{allowlist.name}.json",
        profile=allowlist.collection.ipfs_profile(),
        collection=allowlist.collection,
        pinner=pinner,  # None: each IPFS target, recorded in the ledger
    )
    if allowlist.cid != cid:
        Allowlist.objects.filter(pk=allowlist.pk).update(cid=cid)
        allowlist.cid = cid
    return cid
