"""Several pinning targets at once, and a quorum of them that must hold each pin.

``IPFS_TARGETS`` names the targets (for example the local Kubo node and a pinning service);
:class:`ReplicatedPinner` pins to every one of them, each checked against the CID computed here
as a lone backend checks it, and succeeds when ``IPFS_PIN_QUORUM`` of them hold the content.
The targets are asked at the same time. A target that failed does not fail the pin while the
quorum holds: :meth:`pin_each` reports what each target did, so the caller can record it
(generation/pin_ledger.py) and the periodic check re-pins what is missing
(generation/pin_check.py). A provider's exit is then a change of
``IPFS_TARGETS`` followed by ``manage.py check_pins``, which copies every pin to the new target.

Reads (``get``) take the first target that returns bytes giving the CID; ``has`` is true when
any target holds it; ``check`` (``/readyz``) asks each target and passes while a quorum answers.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ipfs.backends.config import PinningConfig
from ipfs.backends.pinner import Pinner
from ipfs.cid import compute_cid
from ipfs.errors import (
    ContentNotFound,
    IpfsError,
    PinningError,
    QuorumNotReached,
    TooFewTargets,
)
from ipfs.profiles import LEGACY, CidProfile
from ipfs.tree import Tree

__all__ = ["PinReport", "ReplicatedPinner", "Target"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """One place pins go: its name in ``IPFS_TARGETS`` and its backend."""

    name: str
    pinner: Pinner

    def __str__(self) -> str:
        return f"{self.name} ({self.pinner})"


@dataclass
class PinReport:
    """What each target did with one CID: ``None`` for held, else the error it raised."""

    cid: str
    quorum: int
    outcomes: dict[str, PinningError | None] = field(default_factory=dict)

    @property
    def held(self) -> list[str]:
        return [name for name, error in self.outcomes.items() if error is None]

    @property
    def failed(self) -> dict[str, PinningError]:
        return {name: error for name, error in self.outcomes.items() if error is not None}

    def raise_unless_quorum(self) -> str:
        """The CID when a quorum holds it; else the one target's error (a lone target), or
        :class:`~ipfs.errors.QuorumNotReached` naming each target's error."""
        if len(self.held) >= self.quorum:
            return self.cid
        failed = self.failed
        if len(self.outcomes) == 1:
            raise next(iter(failed.values()))
        raise QuorumNotReached(self.cid, self.quorum, self.held, failed)


class ReplicatedPinner(Pinner):
    """Every pin to each target; done when ``quorum`` of them hold it (see module docs)."""

    backend = "targets"

    def __init__(self, targets: Sequence[Target], quorum: int) -> None:
        if not targets:
            raise ValueError("at least one target")
        if not 1 <= quorum <= len(targets):
            raise ValueError(f"quorum {quorum} of {len(targets)} targets")
        self.targets = tuple(targets)
        self.quorum = quorum

    @classmethod
    def from_config(cls, config: PinningConfig) -> Pinner:
        raise TypeError("ReplicatedPinner is built from TargetsConfig (ipfs.backends.pinner_for)")

    def __str__(self) -> str:
        if len(self.targets) == 1:
            return str(self.targets[0].pinner)
        names = ", ".join(t.name for t in self.targets)
        return f"{self.quorum} of the IPFS targets {names}"

    def target(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(f"no IPFS target {name!r} (IPFS_TARGETS: {self.names()})")

    def names(self) -> str:
        return ", ".join(t.name for t in self.targets)

    def close(self) -> None:
        for target in self.targets:
            target.pinner.close()

    # --- pinning ------------------------------------------------------------------------------

    def pin_each(
        self,
        data: bytes,
        *,
        name: str | None = None,
        profile: CidProfile = LEGACY,
        skip: Sequence[str] = (),
    ) -> PinReport:
        """Pin ``data`` on every target but those in ``skip`` (already holding it: they count
        as held); what each did, whether or not the quorum holds."""
        cid = compute_cid(data, profile)
        return self._each(cid, skip, lambda p: p.pin(data, name=name or cid, profile=profile))

    def pin_tree_each(
        self, tree: Tree, *, name: str | None = None, skip: Sequence[str] = ()
    ) -> PinReport:
        """:meth:`pin_each` for a file or folder (:func:`ipfs.tree.build_tree`)."""
        return self._each(tree.root, skip, lambda p: p.pin_tree(tree, name=name or tree.root))

    def _each(self, cid: str, skip: Sequence[str], pin: Callable[[Pinner], str]) -> PinReport:
        """Each target not in ``skip`` pins at the same time (a slow pinning service does not
        hold up the others); the report lists the targets in ``IPFS_TARGETS`` order."""

        def one(target: Target) -> PinningError | None:
            try:
                self._check(cid, pin(target.pinner))
            except PinningError as exc:
                logger.warning("%s: pin of %s failed: %s", target, cid, exc)
                return exc
            return None

        asked = [t for t in self.targets if t.name not in skip]
        if len(asked) > 1:
            # each thread runs in a copy of this one's context: its log lines name the token
            contexts = [contextvars.copy_context() for _ in asked]
            with ThreadPoolExecutor(len(asked), thread_name_prefix="pin") as pool:
                errors = pool.map(lambda c, t: c.run(one, t), contexts, asked)
                done = dict(zip([t.name for t in asked], errors, strict=True))
        else:
            done = {t.name: one(t) for t in asked}
        report = PinReport(cid, self.quorum)
        for target in self.targets:
            report.outcomes[target.name] = done.get(target.name)  # skipped: held already
        return report

    def pin(self, data: bytes, *, name: str | None = None, profile: CidProfile = LEGACY) -> str:
        return self.pin_each(data, name=name, profile=profile).raise_unless_quorum()

    def pin_tree(self, tree: Tree, *, name: str | None = None) -> str:
        return self.pin_tree_each(tree, name=name).raise_unless_quorum()

    def _pin(self, data: bytes, cid: str, name: str, profile: CidProfile) -> str:
        raise NotImplementedError("pin() pins on each target")  # pragma: no cover

    # --- reading ------------------------------------------------------------------------------

    def has(self, cid: str) -> bool:
        return any(self._asked(t, lambda p: p.has(cid), False) for t in self.targets)

    def get(self, cid: str) -> bytes:
        """The bytes from the first target that serves them (each checks the CID)."""
        errors: list[str] = []
        for target in self.targets:
            try:
                return target.pinner.get(cid)
            except (IpfsError, OSError) as exc:
                errors.append(f"{target.name}: {type(exc).__name__}: {exc}")
        raise ContentNotFound(f"no IPFS target served {cid}: {'; '.join(errors)}")

    def get_block(self, cid: str) -> bytes:
        """The block from the first target that serves it."""
        errors: list[str] = []
        for target in self.targets:
            try:
                return target.pinner.get_block(cid)
            except (IpfsError, OSError, NotImplementedError) as exc:
                errors.append(f"{target.name}: {type(exc).__name__}: {exc}")
        raise ContentNotFound(f"no IPFS target served the block {cid}: {'; '.join(errors)}")

    @staticmethod
    def _asked(target: Target, ask: Callable[[Pinner], bool], otherwise: bool) -> bool:
        try:
            return ask(target.pinner)
        except (IpfsError, OSError) as exc:
            logger.warning("%s could not be asked: %s", target, exc)
            return otherwise

    def check(self, timeout: float) -> str:
        """Each target's own check; passes while ``quorum`` of them pass (the line names the
        ones that failed), since pins then still succeed."""
        if len(self.targets) == 1:
            return self.targets[0].pinner.check(timeout)
        lines, down = [], []
        for target in self.targets:
            try:
                lines.append(f"{target.name}: {target.pinner.check(timeout)}")
            except (IpfsError, OSError) as exc:
                down.append(f"{target.name}: {type(exc).__name__}: {exc}")
        if len(lines) < self.quorum:
            raise TooFewTargets(self.quorum, len(self.targets), down)
        if down:
            lines.append(f"DOWN (pins wait for the check to copy them) {'; '.join(down)}")
        return f"quorum {self.quorum} of {len(self.targets)}: " + "; ".join(lines)
