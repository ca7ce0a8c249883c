"""Every pin this backend makes, and which IPFS target holds it: the ledger the pin check,
the metrics and the admin read.

:func:`pin_bytes` and :func:`pin_folder` pin on every configured target
(:class:`ipfs.backends.ReplicatedPinner`), record each target's copy as a
:class:`~generation.models.Pin` (PINNED, or MISSING with the error), and return the CID once
``IPFS_PIN_QUORUM`` targets hold it; below the quorum they raise
:class:`~ipfs.errors.QuorumNotReached` (retryable when any target's failure is) after recording
what did succeed, and a retry asks only the targets that still lack it.
"""

from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.utils import timezone

from generation.models import Collection, Pin, PinnedContent
from ipfs.backends import Pinner, PinReport, ReplicatedPinner, Target, pinner_from_settings
from ipfs.cid import compute_cid
from ipfs.profiles import CidProfile
from ipfs.tree import Tree

__all__ = ["adopt_collection", "pin_bytes", "pin_folder", "record", "replicated"]


def replicated(pinner: Pinner | None = None) -> ReplicatedPinner:
    """The configured targets, or ``pinner`` alone as the one target (its backend's name)."""
    if pinner is None:
        return pinner_from_settings()
    if isinstance(pinner, ReplicatedPinner):
        return pinner
    return ReplicatedPinner([Target(pinner.backend, pinner)], 1)


def pin_bytes(
    data: bytes,
    *,
    name: str,
    profile: CidProfile,
    collection: Collection | None = None,
    pinner: Pinner | None = None,
) -> str:
    """Pin ``data`` on each target (those the ledger says hold it already are not asked) and
    record each copy; the CID once a quorum holds it."""
    targets = replicated(pinner)
    cid = compute_cid(data, profile)
    content = _content(cid, PinnedContent.Kind.FILE, profile, name, len(data), "", collection)
    report = targets.pin_each(data, name=name, profile=profile, skip=_held(content, targets))
    record(content, report)
    return report.raise_unless_quorum()


def pin_folder(
    tree: Tree,
    *,
    name: str,
    source: Path,
    collection: Collection | None = None,
    pinner: Pinner | None = None,
) -> str:
    """:func:`pin_bytes` for a folder built from ``source`` (kept, so the pin check can build
    it again for a target that lost it)."""
    targets = replicated(pinner)
    kind = PinnedContent.Kind.FOLDER if tree.directories else PinnedContent.Kind.FILE
    content = _content(
        tree.root, kind, tree.profile, name, tree.size, str(source.resolve()), collection
    )
    report = targets.pin_tree_each(tree, name=name, skip=_held(content, targets))
    record(content, report)
    return report.raise_unless_quorum()


def _content(
    cid: str,
    kind: str,
    profile: CidProfile,
    label: str,
    size: int,
    source: str,
    collection: Collection | None,
) -> PinnedContent:
    content, _ = PinnedContent.objects.get_or_create(
        cid=cid,
        defaults={
            "kind": kind,
            "profile": profile.name,
            "label": label[:255],
            "size": size,
            "source": source[:500],
            "collection": collection,
        },
    )
    if source and content.source != source:  # a folder pinned again from another place
        PinnedContent.objects.filter(pk=content.pk).update(source=source[:500])
    return content


def _held(content: PinnedContent, targets: ReplicatedPinner) -> list[str]:
    """The configured targets the ledger says hold ``content``."""
    names = [t.name for t in targets.targets]
    return list(
        content.pins.filter(target__in=names, state=Pin.State.PINNED).values_list(
            "target", flat=True
        )
    )


def record(content: PinnedContent, report: PinReport) -> None:
    """Record what each target did with ``content``."""
    now = timezone.now()
    with transaction.atomic():
        for target, error in report.outcomes.items():
            if error is None:
                pin, created = Pin.objects.get_or_create(
                    content=content,
                    target=target,
                    defaults={"state": Pin.State.PINNED, "pinned_at": now, "checked_at": now},
                )
                if not created and pin.state != Pin.State.PINNED:
                    Pin.objects.filter(pk=pin.pk).update(
                        state=Pin.State.PINNED, error="", pinned_at=now, checked_at=now
                    )
            else:
                Pin.objects.update_or_create(
                    content=content,
                    target=target,
                    defaults={
                        "state": Pin.State.MISSING,
                        "error": f"pin failed: {type(error).__name__}: {error}"[:2000],
                        "checked_at": now,
                    },
                )


def adopt_collection(collection: Collection) -> int:
    """Record the CIDs a collection's rows name (its contract metadata, each token's image and
    metadata) that the ledger lacks, with no copy at any target yet, so the next pin check asks
    each target for them; how many were new. A rebuilt collection (chain/rebuild.py) and the
    migration that brought the ledger in adopt this way."""
    profile, slug = collection.cid_profile, collection.slug
    rows: dict[str, PinnedContent] = {}
    if collection.contract_uri.startswith("ipfs://"):
        cid = collection.contract_uri.removeprefix("ipfs://")
        rows[cid] = PinnedContent(
            cid=cid, profile=profile, label=f"{slug}-contract.json", collection=collection
        )
    tokens = collection.tokens.exclude(image_cid="").values_list(
        "token_id", "image_cid", "metadata_cid"
    )
    for token_id, image_cid, metadata_cid in tokens.iterator(chunk_size=2000):
        for cid, suffix in ((image_cid, "png"), (metadata_cid, "json")):
            if cid:
                rows[cid] = PinnedContent(
                    cid=cid, profile=profile, label=f"{slug}-{token_id}.{suffix}",
                    collection=collection,
                )  # fmt: skip
    cids, known = list(rows), set()
    for start in range(0, len(cids), 5000):  # within PostgreSQL's 65,535 parameters
        chunk = cids[start : start + 5000]
        known |= set(PinnedContent.objects.filter(cid__in=chunk).values_list("cid", flat=True))
        # a deleted collection's rows stay (its tokens are on-chain): this one is theirs again
        PinnedContent.objects.filter(cid__in=chunk, collection=None).update(collection=collection)
    new = [row for cid, row in rows.items() if cid not in known]
    PinnedContent.objects.bulk_create(new, batch_size=2000, ignore_conflicts=True)
    return len(new)
