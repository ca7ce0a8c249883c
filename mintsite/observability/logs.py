"""Log lines that say which token and which stage they are about.

Code that works on a token sets the context once (``with log_context(token_id=7, ...)``, from
:mod:`foundation.logcontext`; the Dramatiq middleware in :mod:`mintsite.observability.worker`
does it around every message), and
:class:`ContextFilter`, installed on the log handler, copies it onto every record logged in
that thread meanwhile, whichever logger wrote it (the pipeline's, web3's, Dramatiq's own).

Two formats (``LOG_FORMAT``): ``plain`` for people (the context in brackets after the logger's
name) and ``json`` for log pipelines (one object per line, the context as top-level fields).
Without the filter installed, or outside any context, lines are just shorter.
"""

from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from foundation.logcontext import FIELDS, current_context


class ContextFilter(logging.Filter):
    """Copies the current context onto each record (a field set by ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_context().items():
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
        # one line per HTTP request is noise in the daemons and the demo; django-axes logs
        # every login at INFO, and its failures and lockouts (the part worth reading) at WARNING;
        # pika (RabbitMQ) logs every connection and channel opened and closed at INFO, and each
        # failed connection in half a dozen ERROR lines and a traceback, while the same failure
        # reaches its caller as an exception that Dramatiq or the caller reports
        "loggers": {
            "httpx": {"level": "WARNING"},
            "axes": {"level": "WARNING"},
            "pika": {"level": "CRITICAL"},
        },
    }
