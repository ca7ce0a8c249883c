"""The interface every pinning backend implements, and the CID checks they all share.

``pin`` computes the CID of the bytes here under the caller's CID profile (the collection's:
:mod:`ipfs.profiles`), lets the backend store them with that profile, and refuses any CID the
backend answers with other than that one (:class:`~ipfs.errors.CidMismatch`); ``get``
recomputes the CID of what comes back (:class:`~ipfs.errors.ContentCorrupted`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import ClassVar

from ipfs.backends.config import PinningConfig
from ipfs.cid import canonical_cid, compute_cid, matches_cid
from ipfs.errors import CidMismatch, ContentCorrupted, InvalidCID
from ipfs.profiles import LEGACY, CidProfile
from ipfs.tree import Tree
from ipfs.unixfs import Block

__all__ = ["Pinner", "same_cid"]

logger = logging.getLogger(__name__)


def same_cid(cid: str, other: object) -> bool:
    """Whether ``other`` names the same content as ``cid`` (in any multibase); junk is not."""
    try:
        return canonical_cid(str(other)) == canonical_cid(cid)
    except InvalidCID:
        return False


class Pinner(ABC):
    """Where pinned content lives. ``pin`` returns the verified CID; ``has``/``get`` read back."""

    #: The ``IPFS_BACKEND`` value that selects this class (its key in the registry).
    backend: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_config(cls, config: PinningConfig) -> Pinner:
        """Build the backend from ``config``; :class:`~ipfs.errors.BackendMisconfigured` names
        the setting that is missing or wrong."""

    def pin(self, data: bytes, *, name: str | None = None, profile: CidProfile = LEGACY) -> str:
        """Pin ``data`` and return its CID under ``profile``, verified against the CID computed
        here from ``data``.

        ``name`` labels the pin where the backend keeps labels (pinning services); it defaults
        to the CID. Raises :class:`~ipfs.errors.CidMismatch` when the backend names the bytes
        differently.
        """
        expected = compute_cid(data, profile)
        returned = self._pin(data, expected, name or expected, profile)
        self._check(expected, returned, profile)
        logger.info("pinned %s (%d bytes) with %s", expected, len(data), self)
        return expected

    def pin_tree(self, tree: Tree, *, name: str | None = None) -> str:
        """Pin a file or folder (:func:`ipfs.tree.build_tree`) and return its root CID.

        Every file is stored and checked as :meth:`pin` does, then every directory node, whose
        CID the backend must confirm; the root is pinned last, so what is pinned is complete.
        """
        label = name or tree.root
        if not tree.directories:  # a single file
            (only,) = tree.files
            return self.pin(only.source.read_bytes(), name=label, profile=tree.profile)
        for f in tree.files:
            data = f.source.read_bytes()
            self._check(f.cid, self._store_file(data, f.cid, tree.profile), tree.profile)
        for block in tree.directories:
            self._check(str(block.cid), self._store_block(block), tree.profile)
        self._check(tree.root, self._pin_root(tree.root, label), tree.profile)
        logger.info(
            "pinned %s (%d files, %d bytes) with %s", tree.root, len(tree.files), tree.size, self
        )
        return tree.root

    def _store_file(self, data: bytes, cid: str, profile: CidProfile) -> str:
        """Store one file of a tree without pinning it on its own; the CID reported."""
        raise NotImplementedError(f"{self} cannot pin folders")

    def _store_block(self, block: Block) -> str:
        """Store one directory node; the CID the backend reports for it."""
        raise NotImplementedError(f"{self} cannot pin folders")

    def _pin_root(self, cid: str, name: str) -> str:
        """Pin a tree whose blocks are stored, recursively; the CID the backend reports."""
        raise NotImplementedError(f"{self} cannot pin folders")

    @abstractmethod
    def _pin(self, data: bytes, cid: str, name: str, profile: CidProfile) -> str:
        """Store ``data`` (whose CID under ``profile`` is ``cid``) and return the CID the
        backend reports."""

    @abstractmethod
    def has(self, cid: str) -> bool:
        """Whether this backend holds (pins) ``cid``."""

    @abstractmethod
    def get(self, cid: str) -> bytes:
        """The bytes of ``cid``, checked to give that CID (else ``ContentCorrupted``)."""

    def get_block(self, cid: str) -> bytes:
        """One raw block (a folder's directory node), for :func:`ipfs.tree.fetch_tree`, which
        checks it against its CID."""
        raise NotImplementedError(f"{self} cannot read blocks")

    @abstractmethod
    def check(self, timeout: float) -> str:
        """Whether the backend can take pins now, asked once within ``timeout`` seconds.

        Returns a line for the operator (what answered, its version); raises an
        :class:`~ipfs.errors.IpfsError` or ``OSError`` saying what is wrong. ``/readyz`` calls it.
        """

    def close(self) -> None:  # noqa: B027  (optional hook: only HTTP backends hold connections)
        """Release connections; the pinner must not be used afterwards."""

    def _check(self, expected: str, got: str | None, profile: CidProfile = LEGACY) -> None:
        """Raise :class:`~ipfs.errors.CidMismatch` unless ``got`` is ``expected``."""
        if got is None or not same_cid(expected, got):
            raise CidMismatch(
                expected=expected, got=str(got), backend=str(self), profile=str(profile)
            )

    @staticmethod
    def _verified(cid: str, data: bytes, source: str) -> bytes:
        """``data`` if it gives ``cid`` under some profile, else ``ContentCorrupted``."""
        if matches_cid(data, cid) is None:
            raise ContentCorrupted(
                f"{source} returned bytes whose CID is {compute_cid(data)} (legacy profile), "
                f"not {cid} under any profile"
            )
        return data
