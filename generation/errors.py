"""Errors of the generation side, rooted in one base class; each also inherits the stdlib class
it resembles (as ``chain/errors.py`` does, after web3.py's ``exceptions.py``).

Two families matter to the actors (generation/tasks.py): a ``PipelineError`` is a failure
retrying will not fix, and ends the token FAILED with its message; ``TraitsNotReady`` and
``RenderLeaseHeld`` are not failures at all, and send the message again for later. Anything
else is retried with backoff (Dramatiq), then recorded.
"""

from __future__ import annotations

from collections.abc import Sequence


class GenerationError(Exception):
    """Base for the errors of traits, rendering, the gate, review and the token's lifecycle."""


class PipelineError(GenerationError):
    """A failure that retrying will not fix: bad configuration, a missing model, a bad CID.

    The token's ``failure_reason`` is public (the API, the token page, webhooks): ``public`` is
    what it says when the message carries what only the operator may read (a server path, a
    service's URL or answer, another error's text); the message itself is logged.
    """

    def __init__(self, message: str, *, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public or message


class RenderFailed(PipelineError, RuntimeError):
    """A model would not load, the prompt could not be built, or the render itself raised."""


class PinFailed(PipelineError, RuntimeError):
    """The image or metadata could not be pinned, or a backend answered the wrong CID."""


class PublishFailed(PipelineError, RuntimeError):
    """Publishing cannot work as configured (the RPC serves another chain, a digest differs)."""


class TraitsNotReady(GenerationError, LookupError):
    """Quota mode: token k's traits need the seeds of tokens 1..k-1, not all committed yet."""


class RenderLeaseHeld(GenerationError, RuntimeError):
    """Another run holds the token's render lease: this delivery stands down. The actor sends
    the message again for when the lease lapses (``expires_in`` seconds), in case its holder
    died; by then a live holder has finished and the message finds nothing to do."""

    def __init__(self, token_pk: int, owner: str, expires_in: float) -> None:
        super().__init__(
            f"token pk={token_pk} is being rendered by {owner} (lease lapses in "
            f"{expires_in:.1f} s); standing down"
        )
        self.token_pk, self.owner, self.expires_in = token_pk, owner, expires_in


class ReviewRefused(GenerationError, ValueError):
    """A manager's review step (approve, re-render, retry) cannot be done for this token; the
    message says why, in words the admin shows."""


class NotInCache(ReviewRefused, LookupError):
    """The rejected image is no longer in the render cache."""


class ModelReferenceError(GenerationError, ValueError):
    """A collection's model reference cannot be used; ``field`` names the setting at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class InvalidRarityTable(GenerationError, ValueError):
    """A rarity table (or template) that fails validation; ``problems`` lists every message."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid rarity table: " + "; ".join(self.problems))


class SingleFileError(GenerationError):
    """A single-file checkpoint cannot be written or loaded."""


class CheckpointNotFound(SingleFileError, FileNotFoundError):
    pass


class UnsafeCheckpointFormat(SingleFileError, ValueError):
    """Only ``.safetensors`` is loaded: pickled ``.ckpt``/``.pt``/``.bin`` files can run code."""


class NotADiffusersFolder(SingleFileError, FileNotFoundError):
    pass


class UnsupportedModel(SingleFileError, ValueError):
    """The folder holds something the SD 1.x single-file layout cannot express."""


class UnreadableCheckpoint(SingleFileError, ValueError):
    """The file is not valid safetensors (truncated, or another format renamed)."""


class IncompleteCheckpoint(SingleFileError, ValueError):
    """Some of a component's parameters are not in the file. diffusers loads with
    ``strict=False`` and would leave them at random initial values without a word."""
