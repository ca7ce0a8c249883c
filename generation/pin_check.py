"""The pin check: ask each IPFS target for each pinned CID, and pin again what a target lost.

A target can lose a pin after it was made: a node's repository wiped, a garbage collection
after an unpin, a pinning service that closes (NFT.Storage stopped taking uploads in 2024).
:func:`check_pins` walks the ledger (generation.pin_ledger), the contents checked longest ago
first, asks every configured target whether it holds each one (``has``), and copies what is
missing from a target that has it, the bytes checked against the CID on the way (a folder is
built again from the files it was pinned from, or fetched block by block from a target that
holds it). A target added to ``IPFS_TARGETS`` has no copy
of anything yet, so the check fills it: a provider's exit costs a config change and one run of
``manage.py check_pins``, not tokens.

The leading listener sends the ``check_pins`` message every ``PIN_CHECK_SECONDS``
(``PIN_CHECK_BATCH`` contents per run); ``manage.py check_pins`` runs it at once.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils import timezone

from generation import stages
from generation.models import Pin, PinnedContent
from generation.pin_ledger import replicated
from ipfs.backends import Pinner, ReplicatedPinner, Target
from ipfs.errors import ContentNotFound, IpfsError
from ipfs.profiles import profile_named
from ipfs.tree import build_tree, fetch_tree

__all__ = ["CHECK_PINS_ACTOR", "PinCheck", "TargetTally", "check_pins", "send_check"]

log = logging.getLogger(__name__)

#: The actor (generation/tasks.py) the listener's sweep sends by name, on the io queue.
CHECK_PINS_ACTOR = "check_pins"


@dataclass
class TargetTally:
    """What one target came to in a check."""

    held: int = 0  # had it when asked
    repinned: int = 0  # lacked it, and holds it again
    missing: int = 0  # lacks it, and pinning it again failed (see the Pin's error)
    unreachable: int = 0  # could not be asked

    def line(self) -> str:
        return (
            f"{self.held} held, {self.repinned} pinned again, {self.missing} missing, "
            f"{self.unreachable} not asked (target unreachable)"
        )


@dataclass
class PinCheck:
    """A check's outcome: how many contents, and each target's tally."""

    checked: int = 0
    targets: dict[str, TargetTally] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return sum(t.missing for t in self.targets.values())

    @property
    def repinned(self) -> int:
        return sum(t.repinned for t in self.targets.values())


def contents_to_check(
    *, collection_pk: int | None = None, cids: Iterable[str] = ()
) -> QuerySet[PinnedContent]:
    """The ledger's contents, the ones checked longest ago (never first) first."""
    contents = PinnedContent.objects.order_by(F("checked_at").asc(nulls_first=True), "pk")
    if collection_pk is not None:
        contents = contents.filter(collection_id=collection_pk)
    cids = list(cids)
    if cids:
        contents = contents.filter(cid__in=cids)
    return contents


def check_pins(
    *,
    collection_pk: int | None = None,
    cids: Iterable[str] = (),
    targets: Iterable[str] = (),
    limit: int | None = None,
    repin: bool = True,
    pinner: Pinner | None = None,
) -> PinCheck:
    """Ask each target (``targets``: those names only) for each content (of one collection,
    or ``cids`` only; at most ``limit``), record the answers, and, with ``repin``, pin what a
    target lacks again. Raises ``KeyError`` for a target name not in ``IPFS_TARGETS``."""
    everywhere = replicated(pinner)
    chosen = [everywhere.target(name) for name in targets] or list(everywhere.targets)
    outcome = PinCheck(targets={t.name: TargetTally() for t in chosen})
    contents = contents_to_check(collection_pk=collection_pk, cids=cids)
    for content in contents[:limit] if limit else contents.iterator(chunk_size=500):
        _check_one(content, chosen, everywhere, outcome, repin)
        outcome.checked += 1
    log.info(
        "pin check: %d contents; %s",
        outcome.checked,
        "; ".join(f"{name}: {t.line()}" for name, t in outcome.targets.items()),
    )
    return outcome


def _check_one(
    content: PinnedContent,
    chosen: list[Target],
    everywhere: ReplicatedPinner,
    outcome: PinCheck,
    repin: bool,
) -> None:
    lacking: list[Target] = []
    holders: list[Target] = []
    for target in chosen:
        tally = outcome.targets[target.name]
        try:
            held = target.pinner.has(content.cid)
        except (IpfsError, OSError) as exc:
            tally.unreachable += 1
            _note(content, target.name, None, f"check failed: {type(exc).__name__}: {exc}")
            continue
        if held:
            tally.held += 1
            holders.append(target)
            _note(content, target.name, Pin.State.PINNED, "")
        else:
            lacking.append(target)
    for target in lacking:
        tally = outcome.targets[target.name]
        if not repin:
            tally.missing += 1
            _note(content, target.name, Pin.State.MISSING, "not pinned when checked")
            continue
        try:
            _copy(content, target, holders, everywhere)
        except (IpfsError, OSError, ValueError) as exc:
            tally.missing += 1
            problem = f"{content.cid} ({content.label}) at {target.name}: {exc}"
            outcome.problems.append(problem)
            log.warning("pin check: %s is missing and could not be pinned again", problem)
            _note(
                content,
                target.name,
                Pin.State.MISSING,
                f"not pinned when checked; pinning it again failed: {type(exc).__name__}: {exc}",
            )
        else:
            tally.repinned += 1
            log.info("pin check: %s pinned again at %s", content.cid, target.name)
            _note(content, target.name, Pin.State.PINNED, "", pinned=True)
    PinnedContent.objects.filter(pk=content.pk).update(checked_at=timezone.now())


def _copy(
    content: PinnedContent, target: Target, holders: list[Target], everywhere: ReplicatedPinner
) -> None:
    """Pin ``content`` on ``target`` again: a file's bytes from a target that holds it; a
    folder built again from its source files, or else fetched block by block from a target
    that holds it. Every byte is checked against its CID on the way, and the target checks the
    CIDs as on any pin."""
    profile = profile_named(content.profile)
    name = content.label or content.cid
    if content.kind != PinnedContent.Kind.FOLDER:
        target.pinner.pin(_fetch(content.cid, holders, everywhere), name=name, profile=profile)
        return
    source = Path(content.source) if content.source else None
    if source is not None and source.exists():
        tree = build_tree(source, profile=profile)
        if tree.root == content.cid:
            target.pinner.pin_tree(tree, name=name)
            return
        reason = f"the folder's files at {source} now give {tree.root}, not {content.cid}"
    else:
        reason = f"the folder's files {content.source or '(not recorded)'} are gone"
    errors = [reason]
    for holder in [*holders, *(t for t in everywhere.targets if t not in holders)]:
        if holder is target:
            continue
        with tempfile.TemporaryDirectory(prefix="pin-check-") as scratch:
            try:
                copy = fetch_tree(
                    content.cid,
                    Path(scratch) / "tree",
                    get_block=holder.pinner.get_block,
                    get_file=holder.pinner.get,
                    profile=profile,
                )
            except (IpfsError, OSError, NotImplementedError) as exc:
                errors.append(f"{holder.name} would not serve it: {type(exc).__name__}: {exc}")
                continue
            target.pinner.pin_tree(build_tree(copy, profile=profile), name=name)
            log.info("pin check: folder %s copied from %s (%s)", content.cid, holder.name, reason)
            return
    raise ContentNotFound("; ".join(errors))


def _fetch(cid: str, holders: list[Target], everywhere: ReplicatedPinner) -> bytes:
    """The bytes of ``cid`` (checked by the reading backend), from the targets known to hold
    it first, then any target."""
    for target in holders:
        try:
            return target.pinner.get(cid)
        except (IpfsError, OSError) as exc:
            log.warning("pin check: %s would not serve %s: %s", target.name, cid, exc)
    return everywhere.get(cid)


def _note(
    content: PinnedContent, target: str, state: str | None, error: str, *, pinned: bool = False
) -> None:
    """Record a target's answer for ``content`` (``state`` None: keep the state, note the
    error)."""
    now = timezone.now()
    values: dict[str, object] = {"error": error[:2000], "checked_at": now}
    if state is not None:
        values["state"] = state
    if pinned:
        values["pinned_at"] = now
    updated = Pin.objects.filter(content=content, target=target).update(**values)
    if not updated and state is not None:
        Pin.objects.create(
            content=content,
            target=target,
            state=state,
            error=error[:2000],
            checked_at=now,
            pinned_at=now if state == Pin.State.PINNED else None,
        )


def send_check(cids: Iterable[str] = ()) -> None:
    """Send one ``check_pins`` message to the io workers: the ``PIN_CHECK_BATCH`` contents
    checked longest ago (the listener's sweep), or ``cids`` (the admin's action). The actor is
    in generation/tasks.py, sent by name so the sender need not import it."""
    cids = list(cids)
    args: list[object] = [len(cids) or settings.PIN_CHECK_BATCH]
    if cids:
        args.append(cids)
    stages.send_by_name(CHECK_PINS_ACTOR, stages.IO_QUEUE, args)
