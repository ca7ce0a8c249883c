"""CAR v1 files (https://ipld.io/specs/transport/car/carv1/): blocks with their CIDs, and roots.

A CAR carries a DAG whole, so any IPFS service or node can take it in one upload (``ipfs dag
import``, a pinning service's CAR upload, a Filecoin deal) and hold exactly our blocks under
our CIDs, whatever its own import settings.

Layout: ``varint(len(header)) header`` then, per block, ``varint(len(cid) + len(data)) cid
data`` with the CID in binary. The header is the DAG-CBOR map ``{"roots": [CID, ...],
"version": 1}``; its few bytes are written here (a map of two text keys in DAG-CBOR's order,
shorter key first; each CID as CBOR tag 42 over a byte string of ``0x00`` and the binary CID)
rather than pulling in a CBOR library for them.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from multiformats import CID, varint

from ipfs.errors import ContentCorrupted

__all__ = ["CarWriter", "car_header"]


def _cbor_head(major: int, value: int) -> bytes:
    """A CBOR item head: major type and argument, in the shortest form (DAG-CBOR requires it)."""
    if value < 24:
        return bytes([major << 5 | value])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([major << 5 | info]) + value.to_bytes(size, "big")
    raise ValueError(f"{value} does not fit a CBOR head")


def _cbor_text(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _cbor_head(3, len(raw)) + raw


def car_header(roots: list[CID]) -> bytes:
    """The DAG-CBOR header ``{"roots": roots, "version": 1}``."""
    encoded = [
        b"\xd8\x2a" + _cbor_head(2, len(bytes(cid)) + 1) + b"\x00" + bytes(cid) for cid in roots
    ]
    return (
        _cbor_head(5, 2)
        + _cbor_text("roots")
        + _cbor_head(4, len(roots))
        + b"".join(encoded)
        + _cbor_text("version")
        + _cbor_head(0, 1)
    )


class CarWriter:
    """Collects blocks into ``body`` (a scratch file: a collection's weights may not fit in
    memory), each once (the same image may be named twice) and each checked to hash to its
    CID; :meth:`finish` writes the CAR, header first, once the roots are known."""

    def __init__(self, body: BinaryIO) -> None:
        self.body = body
        self.written: set[bytes] = set()

    def add(self, cid: CID, data: bytes | memoryview) -> bool:
        """Take one block; False when it was taken before."""
        key = bytes(cid)
        if key in self.written:
            return False
        digest = hashlib.sha256(data).digest()
        if cid.hashfun.name != "sha2-256" or digest != bytes(cid.raw_digest):
            raise ContentCorrupted(f"the block given for {cid} does not hash to it")
        self.written.add(key)
        self.body.write(varint.encode(len(key) + len(data)) + key)
        self.body.write(data)
        return True

    def finish(self, out: BinaryIO, roots: list[CID]) -> int:
        """Write the CAR (header naming ``roots``, then every block) to ``out``; its size."""
        header = car_header(roots)
        prefix = varint.encode(len(header)) + header
        out.write(prefix)
        self.body.seek(0)
        copied = 0
        while chunk := self.body.read(1 << 20):
            out.write(chunk)
            copied += len(chunk)
        return len(prefix) + copied
