"""What a token's ``failure_reason`` says when a stage used up its retries.

``failure_reason`` is public: the API, the token page and webhooks serve it. The error that
ended the last try is not: its text may carry an RPC or pinning-service URL with its API key, a
server path, a node's raw answer. So the reason names the stage and the *kind* of error, in the
project's own words, from a fixed list ("the seed commit gave up after 8 retries: the chain
RPC was unavailable"), and the error itself goes to the log, with the token's context
(``foundation.logcontext``), where the operator looks. An error of no known kind is named by
its class alone ("an unexpected FileExistsError").

The kind is read from the traceback Dramatiq keeps on a message that used up its retries (the
only trace of the error left by then): its last line starts with the exception's dotted class
name, looked up among the modules this process has loaded (nothing is imported for it).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from foundation.logcontext import log_context
from generation import stages
from ipfs.errors import BackendUnavailable, PinTimeout

log = logging.getLogger(__name__)

# (an exception class, what the reason says of an error of that class), the first match wins;
# a stage's own kinds come before these.
Kinds = Sequence[tuple[type[BaseException], str]]
COMMON_KINDS: Kinds = (
    (BackendUnavailable, "the IPFS backend was unavailable"),
    (PinTimeout, "the IPFS backend did not pin in time"),
    (OperationalError, "the database was unavailable"),
    (InterfaceError, "the database was unavailable"),
    (RedisConnectionError, "the broker was unavailable"),
    (RedisTimeoutError, "the broker was unavailable"),
    (TimeoutError, "a service it depends on did not answer in time"),
    (ConnectionError, "a service it depends on was unavailable"),
)


def last_error(message_data: dict[str, Any]) -> str:
    """The last line of the traceback Dramatiq kept on a message that used up its retries."""
    traceback = message_data.get("options", {}).get("traceback", "").strip()
    return traceback.splitlines()[-1] if traceback else "no traceback recorded"


def error_class(error: str) -> type[BaseException] | None:
    """The class named at the start of a traceback's last line (``"chain.errors.X: ..."``), if
    a loaded module defines it."""
    name = error.partition(":")[0].strip()
    module, _, qualname = name.rpartition(".")
    found = getattr(sys.modules.get(module or "builtins"), qualname, None) if qualname else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def kind_of(error: str, kinds: Kinds = ()) -> str:
    """What the reason says of ``error`` (a traceback's last line): its kind's words, or the
    class's name alone."""
    cls = error_class(error)
    if cls is not None:
        for known, says in (*kinds, *COMMON_KINDS):
            if issubclass(cls, known):
                return says
        return f"an unexpected {cls.__name__}"
    name = error.partition(":")[0].strip().rpartition(".")[2]
    return f"an unexpected {name}" if name.isidentifier() else "an unexpected error"


def gave_up(message_data: dict[str, Any], retries: int, kinds: Kinds = ()) -> str:
    """The public reason for a token whose stage (the message's actor) used up its retries:
    ``"the seed commit gave up after 8 retries: the chain RPC was unavailable"``."""
    actor = message_data.get("actor_name", "")
    stage = next((s.name for s in stages.STAGES if s.actor == actor), actor)
    return (
        f"the {stage} gave up after {retries} retries: {kind_of(last_error(message_data), kinds)}"
    )


def log_detail(
    reason: str,
    message_data: dict[str, Any],
    *,
    collection: str | None = None,
    token_pks: Sequence[int] = (),
) -> None:
    """Log the error behind a public ``reason``, with the collection and tokens it concerns,
    where the operator (not the API, the page or a webhook) reads it."""
    single = token_pks[0] if len(token_pks) == 1 else None
    with log_context(collection=collection, token_pk=single):
        log.error(
            "%s (token pks %s); the last try's error: %s",
            reason,
            ", ".join(str(pk) for pk in token_pks) or "none",
            last_error(message_data),
        )
