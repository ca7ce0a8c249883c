"""Contract ABIs shipped as package data, so code installed from a wheel (the verifier) can bind
the contract without the repository's ``contracts/build``.

``node contracts/compile.js`` writes ``<Name>.abi.json`` here beside ``contracts/build/<Name>.json``;
a test checks the two ABIs are equal.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SHIPPED = ("MintOnDemand", "PaymentSplit")


@cache
def load_abi(name: str = "MintOnDemand") -> list[dict[str, Any]]:
    """The ABI of contract ``name`` (one of :data:`SHIPPED`)."""
    if name not in SHIPPED:
        raise LookupError(f"no ABI shipped for {name!r}; shipped: {', '.join(SHIPPED)}")
    text = resources.files(__name__).joinpath(f"{name}.abi.json").read_text(encoding="utf-8")
    abi: list[dict[str, Any]] = json.loads(text)
    return abi
