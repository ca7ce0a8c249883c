"""Log lines that say which token and which stage they are about.

Code that works on a token sets the context once (``with log_context(token_id=7, ...)``; the
Dramatiq middleware in :mod:`mintsite.observability.worker` does it around every message), and
:class:`ContextFilter`, installed on the log handler, copies it onto every record logged in
that thread meanwhile, whichever logger wrote it (the pipeline's, web3's, Dramatiq's own).

Two formats (``LOG_FORMAT``): ``plain`` for people (the context in brackets after the logger's
name) and ``json`` for log pipelines (one object per line, the context as top-level fields).
Without the filter installed, or outside any context, lines are just shorter.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

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


class ContextFilter(logging.Filter):
    """Copies the current context onto each record (a field set by ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class PlainFormatter(logging.Formatter):
    """``2026-01-01 12:00:00,000 INFO generation.pipeline [stage=render_token token_id=7]: …``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        pairs = [f"{key}={getattr(record, key)}" for key in FIELDS if hasattr(record, key)]
        record.context = f" [{' '.join(pairs)}]" if pairs else ""
        return super().formatMessage(record)


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, the context fields, and any
    ``extra=`` a caller passed; ``exc_info`` as the formatted traceback."""

    def __init__(self) -> None:
        super().__init__(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            # "context" is the plain format's rendering; "color_message" comes from uvicorn-style
            # loggers. Neither belongs in a JSON line.
            reserved_attrs=[*RESERVED_ATTRS, "context", "color_message"],
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """The ``LOGGING`` setting for ``LOG_FORMAT`` (plain or json) and ``LOG_LEVEL``."""
    formats = {"plain": f"{__name__}.PlainFormatter", "json": f"{__name__}.JsonLineFormatter"}
    if log_format not in formats:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"LOG_FORMAT={log_format!r} is not one of {sorted(formats)} "
            "(plain for people, json for log pipelines)"
        )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": f"{__name__}.ContextFilter"}},
        "formatters": {log_format: {"()": formats[log_format]}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                # on the handler, not a logger: a logger's filters skip records that reach it
                # from its children
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        # one line per HTTP request is noise in the daemons and the demo
        "loggers": {"httpx": {"level": "WARNING"}},
    }
