"""The contract's sale ``Phase`` struct (contracts/SaleRules.sol), in its field order.

One definition for every place that builds or reads one: a manager's phase scheduled with
``setPhase`` (sales.models.SalePhase), the mint page's reading of ``scheduledPhase``
(mintsite/pages/sale.py), the gas benchmark and the contract's tests.
"""

from __future__ import annotations

from typing import NamedTuple

ZERO_ROOT = bytes(32)


class PhaseStruct(NamedTuple):
    """``Phase``: times in seconds, prices in wei; ``merkle_root`` zero for a phase anyone may
    mint in, ``step_seconds`` zero for a fixed price."""

    start: int
    end: int
    step_seconds: int
    max_per_wallet: int  # 0: no cap in the phase
    price: int
    floor_price: int  # a fixed price's is its price (the contract refuses another)
    drop_per_step: int
    merkle_root: bytes

    @classmethod
    def of(
        cls,
        start: int,
        end: int,
        *,
        price: int,
        floor_price: int | None = None,
        step_seconds: int = 0,
        drop_per_step: int = 0,
        max_per_wallet: int = 0,
        merkle_root: bytes = ZERO_ROOT,
    ) -> PhaseStruct:
        """A phase by its fields' names; a floor not given is the price (a fixed price)."""
        floor = price if floor_price is None else floor_price
        return cls(
            start, end, step_seconds, max_per_wallet, price, floor, drop_per_step, merkle_root
        )
