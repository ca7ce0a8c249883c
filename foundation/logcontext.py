"""Which token, stage, collection or block range the current thread is working on, for the log
lines it writes (mintsite/observability/logs.py copies these fields onto every record).

The foundation layer: imports nothing of the app, so the chain listener, the pipeline and the
web tier can all set it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The fields a context may carry, in the order the plain format shows them.
FIELDS = ("stage", "collection", "token_id", "token_pk", "chain_id", "blocks", "message_id")

# None until set: a shared mutable default would leak fields between threads
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "mint_log_context", default=None
)


def current_context() -> dict[str, Any]:
    """The fields set in this thread (or task) right now."""
    return dict(_context.get() or {})


def bind(**fields: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Add ``fields`` to the context until :func:`unbind` is called with the returned token.

    For hooks that open and close a context in two different calls (Dramatiq's before and
    after hooks); elsewhere :func:`log_context` is simpler.
    """
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log context field(s) {sorted(unknown)}; known: {FIELDS}")
    merged = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    return _context.set(merged)


def update_context(**fields: Any) -> None:
    """Change fields of the innermost :func:`log_context` until it ends (a loop's current
    block range, say); outside any context, nothing happens."""
    current = _context.get()
    if current is not None:
        bind(**fields)  # the enclosing context's reset undoes this too


def unbind(token: contextvars.Token[dict[str, Any] | None]) -> None:
    _context.reset(token)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every line logged in this thread inside the block carries ``fields``."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)
