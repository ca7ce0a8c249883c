"""CID profiles: the parameters that turn the same bytes into one CID and not another.

The same file gets different CIDs from tools that chunk it or lay out its DAG differently
(IPIP-499, https://specs.ipfs.tech/ipips/ipip-0499/). A collection names the profile its CIDs
are made with (``Collection.cid_profile``, frozen with its config), and everything that
computes, pins, checks or serves its content uses that profile:

- ``legacy``: what this project has always computed, ``ipfs add --cid-version=1 --raw-leaves``
  with Kubo's classic defaults: 256 KiB chunks, 174 links per node, a directory sharded when
  its links' names and CIDs pass 256 KiB (``links-bytes``). The default of every collection
  made before profiles existed.
- ``unixfs-v1-2025``: IPIP-499's profile, what new Kubo nodes (``ipfs config profile apply
  unixfs-v1-2025``), Helia and ``ipfs-car`` produce: 1 MiB chunks, 1024 links per node, a
  directory sharded when its whole dag-pb block passes 256 KiB (``block-bytes``).

Both are CIDv1, sha2-256, raw leaves, balanced layout, no mode or mtime, hidden names left out.
Content of at most one chunk is a single raw block in both, so the two profiles name it alike;
for anything larger they differ (a 300 KiB image is a dag-pb root under ``legacy`` and a raw
block under ``unixfs-v1-2025``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["LEGACY", "PROFILES", "UNIXFS_V1_2025", "CidProfile", "profile_named"]


@dataclass(frozen=True)
class CidProfile:
    """One set of UnixFS import parameters (the ones this project varies; the rest are fixed:
    CIDv1, sha2-256, raw leaves, balanced layout)."""

    name: str
    chunk_size: int
    max_links: int
    #: How a directory's size is estimated against :attr:`hamt_threshold` (IPIP-499):
    #: ``links-bytes`` (each link's name and CID bytes) or ``block-bytes`` (the whole block).
    hamt_estimation: str
    hamt_threshold: int = 262144

    @property
    def chunker(self) -> str:
        """Kubo's ``--chunker`` value."""
        return f"size-{self.chunk_size}"

    def kubo_add_params(self) -> dict[str, str]:
        """The ``/api/v0/add`` options that make Kubo build this profile's DAG whatever its own
        ``Import.*`` config says (``max-file-links`` needs Kubo 0.35 or later)."""
        return {
            "cid-version": "1",
            "raw-leaves": "true",
            "chunker": self.chunker,
            "hash": "sha2-256",
            "trickle": "false",
            "max-file-links": str(self.max_links),
        }

    def record(self) -> dict[str, Any]:
        """The profile as the frozen config states it: its name and every parameter, so a
        verifier without this code can still rebuild the CIDs."""
        return {
            "name": self.name,
            "cid_version": 1,
            "hash": "sha2-256",
            "chunker": self.chunker,
            "layout": "balanced",
            "max_links": self.max_links,
            "raw_leaves": True,
            "hamt_threshold": f"{self.hamt_threshold} ({self.hamt_estimation})",
        }

    def __str__(self) -> str:
        return (
            f"{self.name} (CIDv1, raw leaves, sha2-256, {self.chunker} chunks, balanced layout, "
            f"{self.max_links} links per node)"
        )


LEGACY = CidProfile("legacy", chunk_size=262144, max_links=174, hamt_estimation="links-bytes")
UNIXFS_V1_2025 = CidProfile(
    "unixfs-v1-2025", chunk_size=1048576, max_links=1024, hamt_estimation="block-bytes"
)

#: Every profile by name; :attr:`Collection.cid_profile` holds one of these names.
PROFILES: dict[str, CidProfile] = {p.name: p for p in (LEGACY, UNIXFS_V1_2025)}


def profile_named(name: str) -> CidProfile:
    """The profile called ``name``; :class:`ValueError` lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown CID profile {name!r}: expected one of {', '.join(PROFILES)}"
        ) from None
