"""The torch seed of one render attempt, derived from the token's on-chain seed.

Pure (no torch): the verifier recomputes it from the published provenance without the weights.
"""

from __future__ import annotations

import hashlib

_SEED_MASK = (1 << 63) - 1


def torch_seed_for(seed: bytes, attempt: int) -> int:
    """Derive the ``torch.Generator`` seed for one render attempt.

    ``int.from_bytes(sha256(seed || attempt.to_bytes(4, "big")).digest()[:8], "big") & (2**63 - 1)``

    ``seed`` is the token's 32-byte on-chain seed; ``attempt`` counts re-renders after a
    rejected image (0 for the first). The result is masked to 63 bits so it is a valid,
    non-negative ``manual_seed`` on every platform.
    """
    if not isinstance(seed, bytes | bytearray):
        raise TypeError(f"seed must be bytes, not {type(seed).__name__}")
    if not 0 <= attempt < 2**32:
        raise ValueError(f"attempt must fit in 4 unsigned bytes, got {attempt}")
    digest = hashlib.sha256(bytes(seed) + attempt.to_bytes(4, "big")).digest()
    return int.from_bytes(digest[:8], "big") & _SEED_MASK
