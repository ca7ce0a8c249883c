"""Canonical JSON: the one byte form of a document whose sha256 goes on-chain.

Sorted keys, compact separators, UTF-8, no NaN: anyone holding the same fields gets the same
bytes, hence the same digest and CID. Pure (no Django), so the third-party verifier uses it too.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
