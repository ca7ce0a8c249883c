"""Errors of content addressing, the store and the pinning backends.

One base, :class:`IpfsError`, so a caller can catch everything IPFS raises; each error also
inherits the stdlib class it resembles, so code that knows nothing of this package still
classifies it (a missing CID is a ``KeyError``, a node that never answers a ``ConnectionError``).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BackendMisconfigured",
    "BackendRejected",
    "BackendUnavailable",
    "CidMismatch",
    "ContentCorrupted",
    "ContentNotFound",
    "ContentTooLarge",
    "IncompatibleNode",
    "InvalidCID",
    "IpfsError",
    "PinTimeout",
    "PinningError",
    "QuorumNotReached",
    "RemotePinFailed",
    "StoreNotWritable",
    "TooFewTargets",
    "UnknownBackend",
]


class IpfsError(Exception):
    """Base class for content-addressing and pinning errors, so callers can catch them all."""


# --- content and CIDs ----------------------------------------------------------------------------


class ContentTooLarge(IpfsError, ValueError):
    """Content exceeds one Kubo chunk, so its CID is a dag-pb root, not a sha256 of the bytes."""


class InvalidCID(IpfsError, ValueError):
    """A CID string is malformed or not of a form this project produces."""


class ContentNotFound(IpfsError, KeyError):
    """The store holds no content for the requested CID."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else "content not found"


class ContentCorrupted(IpfsError):
    """Stored bytes no longer hash to their CID (disk corruption or tampering)."""


class StoreNotWritable(IpfsError, PermissionError):
    """The local store's directory (or the nearest existing parent) cannot be written."""


# --- configuration -------------------------------------------------------------------------------


class BackendMisconfigured(IpfsError, ValueError):
    """A pinning backend's configuration is missing or wrong; the message names the setting."""

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class UnknownBackend(BackendMisconfigured, LookupError):
    """No backend is registered under the configured name; the message lists the known ones."""


# --- pinning -------------------------------------------------------------------------------------


class PinningError(IpfsError):
    """A backend could not pin, find or return content."""

    #: Whether trying again later can help (a node down, a slow service), or not (a wrong CID,
    #: a refused token: someone has to change something first).
    retryable: ClassVar[bool] = True


class CidMismatch(PinningError, ValueError):
    """A backend named our bytes with a CID other than the one we computed for them."""

    retryable = False

    def __init__(self, *, expected: str, got: str, backend: str, profile: str = "") -> None:
        self.expected, self.got, self.backend = expected, got, backend
        super().__init__(
            f"{backend} answered CID {got} for content whose CID is {expected} under the CID "
            f"profile {profile or 'legacy'}; nothing is pinned or published under {got}. "
            "Check the node's import settings and software version."
        )


class IncompatibleNode(PinningError):
    """A node that cannot build a CID profile's DAG: too old for an option, or configured so
    that its import settings override the request's (``/readyz`` says which)."""

    retryable = False


class BackendUnavailable(PinningError, ConnectionError):
    """No usable answer from a backend after every retry (refused, timed out, 5xx, 429).

    ``where`` is what was asked (``"Kubo RPC at http://…"``) and ``last_error`` the last try's
    failure alone (``"ConnectError: …"``), for a reader such as the health check that words
    its own message.
    """

    def __init__(self, message: str, *, where: str, last_error: str) -> None:
        super().__init__(message)
        self.where, self.last_error = where, last_error


class BackendRejected(PinningError):
    """A backend refused the request (4xx: a bad token, a bad argument); retrying won't help."""

    retryable = False


class RemotePinFailed(PinningError):
    """The backend answered, and its answer is that it did not pin the content."""


class PinTimeout(PinningError, TimeoutError):
    """A pinning service left a pin queued or pinning past its deadline, every time we asked."""


class QuorumNotReached(PinningError):
    """Fewer than ``IPFS_PIN_QUORUM`` targets hold the content. Retryable when any target's
    failure is (a node down, a slow service), so the stage tries again later; the targets
    that did pin keep their pins and are not asked again."""

    def __init__(
        self, cid: str, quorum: int, held: list[str], failed: dict[str, PinningError]
    ) -> None:
        self.cid, self.quorum, self.held, self.failed = cid, quorum, held, failed
        self.retryable = any(error.retryable for error in failed.values())  # type: ignore[misc]
        reasons = "; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in failed.items())
        super().__init__(
            f"{cid} is held by {len(held)} IPFS target(s) ({', '.join(held) or 'none'}), "
            f"fewer than IPFS_PIN_QUORUM={quorum}; {reasons}"
        )


class TooFewTargets(PinningError):
    """``/readyz``: fewer than ``IPFS_PIN_QUORUM`` targets pass their check, so no pin can
    succeed now."""

    def __init__(self, quorum: int, targets: int, down: list[str]) -> None:
        super().__init__(
            f"only {targets - len(down)} of {targets} IPFS targets answer, fewer than "
            f"IPFS_PIN_QUORUM={quorum}: {'; '.join(down)}"
        )
