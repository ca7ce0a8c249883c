"""Errors of the web tier and the project's own processes, rooted in one base class; each also
inherits the stdlib class it resembles. The API's errors (with their codes and HTTP statuses)
are mintsite/api/errors.py; mintsite/webhook_signature.py keeps its own, since integrators
copy that module alone to check our signatures."""

from __future__ import annotations


class MintsiteError(Exception):
    """Base for the web tier's and the project's errors."""


class EmbeddedRedisError(MintsiteError, RuntimeError):
    """The embedded redis-server (``make run`` with no ``REDIS_URL``) is missing or would not
    start."""


class CheckFailed(MintsiteError, RuntimeError):
    """A dependency is not usable; the message says why, for the operator reading /readyz."""


class ChainReadError(MintsiteError, ConnectionError):
    """No RPC URL of a chain answered in time, or it answered nonsense."""
