"""The rarity tables the tests and the benchmarks render with, written once.

``WEIGHTED`` is a palette of two options, warm three times as likely as cold; ``QUOTA`` is the
same palette with fixed counts for a supply of 3 (2 warm, 1 cold); ``WEIGHTED_WITH_SHAPE`` adds
a second category, so that prompts carry two traits (``bench_load``'s collection). Each name is
a fresh copy: a test that edits its table cannot change another's.
"""

from __future__ import annotations

import copy
from typing import Any


def _palette(amount: str, warm: int, cold: int) -> dict[str, Any]:
    return {
        "name": "palette",
        "verify": False,
        "options": [
            {"name": "warm", "prompt": "in warm reds", amount: warm},
            {"name": "cold", "prompt": "in cold blues", amount: cold},
        ],
    }


SHAPE: dict[str, Any] = {
    "name": "shape",
    "verify": False,
    "options": [
        {"name": "circles", "prompt": "of circles", "weight": 1},
        {"name": "stripes", "prompt": "of stripes", "weight": 1},
    ],
}

WEIGHTED: dict[str, Any] = {"mode": "weighted", "categories": [_palette("weight", 3, 1)]}
QUOTA: dict[str, Any] = {"mode": "quota", "categories": [_palette("quota", 2, 1)]}
WEIGHTED_WITH_SHAPE: dict[str, Any] = {
    "mode": "weighted",
    "categories": [_palette("weight", 3, 1), copy.deepcopy(SHAPE)],
}
