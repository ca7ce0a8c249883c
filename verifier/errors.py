"""The verifier's one exception: input it cannot use (as opposed to a check that FAILs)."""

from __future__ import annotations


class VerifyError(ValueError):
    """Bad input to the verifier (not a failed check): an unreachable RPC, a missing folder, a
    re-render asked for without the ``render`` extra installed."""
