"""A collection's every pinned block in one CAR v1 file (``manage.py export_car``).

So the whole collection can be handed to any IPFS service, node or Filecoin deal in one upload,
and a provider's exit costs a re-upload, not the content. The CAR holds, under the collection's
CID profile, every block of:

- the contract metadata (``contractURI``, or the prepared freeze's) and the collection image
  and banner it names;
- each token's metadata and image, for every token pinned so far;
- the published weights the frozen config names (``weights``: rebuilt from the local files,
  each root checked against the frozen CID).

Its one root is a UnixFS directory made for the export (the only blocks here that the pipeline
did not pin), so pinning that root pins everything::

    contract.json  collection-image  banner-image  tokens/<id // 1000>/<id>.json  .../<id>.png
    weights/<key>  (diffusion, clip, adapters-0, style_images-1, …: a folder or the file)

Tokens go in folders of a thousand so that no directory grows past the size Kubo would shard.
Every file's bytes come from the configured backend (``get``, which checks them against
their CID); every block is checked to hash to its CID as it is written.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from multiformats import CID

from generation.models import Collection, Token
from ipfs import unixfs
from ipfs.backends import Pinner, pinner_from_settings
from ipfs.car import CarWriter
from ipfs.cid import canonical_cid, matches_cid
from ipfs.errors import ContentCorrupted
from ipfs.profiles import CidProfile

log = logging.getLogger(__name__)

TOKENS_PER_FOLDER = 1000


@dataclass
class CarExport:
    """What was written: the root, and each named item with its CID."""

    root: str = ""
    size: int = 0
    blocks: int = 0
    items: dict[str, str] = field(default_factory=dict)  # path in the root folder -> CID


class _Folder:
    """The export's directory tree while it is gathered: name -> CID and Tsize, or a folder."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[CID, int] | _Folder] = {}

    def put(self, path: str, cid: CID, tsize: int) -> None:
        head, _, rest = path.partition("/")
        if rest:
            below = self.entries.setdefault(head, _Folder())
            assert isinstance(below, _Folder)
            below.put(rest, cid, tsize)
        else:
            self.entries[head] = (cid, tsize)

    def build(self, car: CarWriter, profile: CidProfile) -> tuple[CID, int]:
        links: list[tuple[str, CID, int]] = []
        for name, entry in self.entries.items():
            cid, tsize = entry.build(car, profile) if isinstance(entry, _Folder) else entry
            links.append((name, cid, tsize))
        block = unixfs.directory_block(links, hamt_estimation=profile.hamt_estimation)
        car.add(block.cid, block.data)
        return block.cid, len(block.data) + sum(tsize for _, _, tsize in links)


def _cid_of(uri: str) -> str:
    return canonical_cid(uri.removeprefix("ipfs://").split("/")[0])


class _Exporter:
    def __init__(self, collection: Collection, pinner: Pinner, car: CarWriter) -> None:
        self.collection, self.pinner, self.car = collection, pinner, car
        self.profile = collection.ipfs_profile()
        self.folder = _Folder()
        self.result = CarExport()

    def _take(self, block: unixfs.Block) -> None:
        self.car.add(block.cid, block.data)

    def file(self, path: str, cid: str) -> bytes:
        """Every block of the file ``cid`` (bytes from the backend, checked), named ``path``."""
        data = self.pinner.get(cid)
        # the profile the CID was made with: the collection's, unless pinned before it existed
        profile = matches_cid(data, cid)
        if profile is None:
            raise ContentCorrupted(f"{self.pinner} served bytes that do not give {cid}")
        root, tsize = unixfs.file_root(
            data,
            chunk_size=profile.chunk_size,
            max_links=profile.max_links,
            on_block=self._take,
        )
        self.folder.put(path, root, tsize)
        self.result.items[path] = str(root)
        return data

    def contract(self) -> None:
        uri = self.collection.contract_uri or self.collection.prepared_contract_uri
        if not uri.startswith("ipfs://"):
            return
        document = json.loads(self.file("contract.json", _cid_of(uri)))
        for key, name in (("image", "collection-image"), ("banner_image", "banner-image")):
            if str(document.get(key, "")).startswith("ipfs://"):
                self.file(name, _cid_of(document[key]))
        weights = (document.get("generation") or {}).get("weights")
        if isinstance(weights, dict):
            self.weights(weights)

    def weights(self, frozen: dict[str, object]) -> None:
        """The published trees, rebuilt from the local files under the collection's profile;
        each root must be the CID the frozen config names."""
        from generation.published_weights import _items, _tree

        for key, path in _items(self.collection):
            base, _, index = key.partition("[")
            entry = frozen.get(base)
            if index:
                entry = entry[int(index.rstrip("]"))] if isinstance(entry, list) else None
            wanted = entry.get("cid") if isinstance(entry, dict) else None
            tree = _tree(path, self.profile)
            if wanted is None or canonical_cid(str(wanted)) != tree.root:
                raise ContentCorrupted(
                    f"the local {key} at {path} gives CID {tree.root}, the frozen config names "
                    f"{wanted}: the published weights cannot be exported from these files"
                )
            for f in tree.files:
                unixfs.file_root(
                    f.source.read_bytes(),
                    chunk_size=self.profile.chunk_size,
                    max_links=self.profile.max_links,
                    on_block=self._take,
                )
            name = f"weights/{base}-{index.rstrip(']')}" if index else f"weights/{base}"
            if tree.directories:
                root_block = tree.directories[-1]  # children before parents: the root last
                for block in tree.directories:
                    self.car.add(block.cid, block.data)
                node = unixfs.decode_pb_node(root_block.data)
                tsize = len(root_block.data) + sum(link.tsize for link in node.links)
                self.folder.put(name, root_block.cid, tsize)
            else:
                (only,) = tree.files
                cid, tsize = unixfs.file_root(
                    only.source.read_bytes(),
                    chunk_size=self.profile.chunk_size,
                    max_links=self.profile.max_links,
                )
                self.folder.put(name, cid, tsize)
            self.result.items[name] = tree.root

    def tokens(self) -> None:
        pinned = (
            Token.objects.filter(collection=self.collection)
            .exclude(metadata_cid="")
            .order_by("token_id")
            .values_list("token_id", "image_cid", "metadata_cid")
        )
        for token_id, image_cid, metadata_cid in pinned.iterator():
            below = f"tokens/{token_id // TOKENS_PER_FOLDER}/{token_id}"
            self.file(f"{below}.json", metadata_cid)
            if image_cid:
                self.file(f"{below}.png", image_cid)


def export_car(collection: Collection, out: BinaryIO, *, pinner: Pinner | None = None) -> CarExport:
    """Write ``collection``'s CAR to ``out`` (see the module's docstring); what was written."""
    with tempfile.TemporaryFile() as body:
        car = CarWriter(body)
        exporter = _Exporter(collection, pinner or pinner_from_settings(), car)
        exporter.contract()
        exporter.tokens()
        root, _ = exporter.folder.build(car, exporter.profile)
        result = exporter.result
        result.root, result.blocks = str(root), len(car.written)
        result.size = car.finish(out, [root])
    log.info(
        "%s: CAR of %d blocks (%d bytes), root %s",
        collection.slug,
        result.blocks,
        result.size,
        result.root,
    )
    return result


def export_car_to(collection: Collection, path: Path, *, pinner: Pinner | None = None) -> CarExport:
    """:func:`export_car` into the file at ``path``, written whole or not at all."""
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") as out:
            result = export_car(collection, out, pinner=pinner)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return result
