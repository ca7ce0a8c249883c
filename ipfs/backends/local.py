"""``local``: the content-addressed store on disk, served by the gateway view at ``/ipfs/<cid>``.

The embedded default. After writing, the file is read back and its CID recomputed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ipfs.backends.config import PinningConfig
from ipfs.backends.pinner import Pinner
from ipfs.errors import StoreNotWritable
from ipfs.profiles import CidProfile
from ipfs.store import LocalStore
from ipfs.unixfs import Block

__all__ = ["LocalPinner"]


class LocalPinner(Pinner):
    """The embedded backend: the on-disk :class:`~ipfs.store.LocalStore` the gateway serves."""

    backend = "local"

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    @classmethod
    def from_config(cls, config: PinningConfig) -> LocalPinner:
        return cls(LocalStore(Path(config.store_dir)))

    def __str__(self) -> str:
        return f"local store {self.store.root}"

    def _pin(self, data: bytes, cid: str, name: str, profile: CidProfile) -> str:
        stored = self.store.add(data, profile)
        self.store.get(stored)  # read back: recomputes the CID of the bytes now on disk
        return stored

    def _store_file(self, data: bytes, cid: str, profile: CidProfile) -> str:
        return self._pin(data, cid, cid, profile)

    def _store_block(self, block: Block) -> str:
        return self.store.add_block(block)

    def _pin_root(self, cid: str, name: str) -> str:
        self.store.block(cid)  # read back: the stored root hashes to its CID
        return cid

    def has(self, cid: str) -> bool:
        return self.store.has_block(cid)

    def get(self, cid: str) -> bytes:
        return self.store.get(cid)

    def get_block(self, cid: str) -> bytes:
        return self.store.block(cid)

    def check(self, timeout: float) -> str:
        # The store's directories are made on the first write, so a fresh deployment has none
        # yet: what must be writable is the nearest directory that exists.
        root = self.store.root
        existing = next((p for p in (root, *root.parents) if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            raise StoreNotWritable(f"the local IPFS store {root} cannot be written")
        return str(self)
