"""A cap on what one client holds open at once: token streams (SSE) and waiting long polls.

Each holds a server thread (gunicorn's gthread pool is fixed) for up to
``API_STREAM_MAX_SECONDS`` / ``API_LONG_POLL_MAX_SECONDS``, and the rate limit counts it once.
So a client (its API key; without one, its address as the anonymous throttle takes it) holds
at most ``API_MAX_STREAMS_PER_CLIENT`` at once; one more is a 429 ``too_many_streams`` with
Retry-After. The places are counted in Redis (``SharedRedisCache.take_place``), shared by every
web process and machine, each under a lease renewed while it is held: the places of a web
process that dies mid-stream free themselves when their leases end.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.request import Request

from mintsite.cache import SharedRedisCache, shared_cache
from mintsite.client_address import client_address
from mintsite.models import ApiKey

logger = logging.getLogger(__name__)

LEASE_SECONDS = 30.0  # a held place is renewed well within this


class TooManyStreams(exceptions.Throttled):
    default_code = "too_many_streams"


class StreamsBusy(exceptions.Throttled):
    """This web process has given every thread it may to streams and long polls."""

    status_code = 503
    default_code = "streams_busy"


class _ProcessHolds:
    """Streams and long polls held in this process (each holds one of its threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def take(self) -> bool:
        limit = settings.API_MAX_STREAMS_PER_PROCESS
        with self._lock:
            if limit and self.count >= limit:
                return False
            self.count += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.count -= 1


process_holds = _ProcessHolds()


def client_key(request: Request) -> str:
    """Whose places a request takes: its API key's, else its address's."""
    if isinstance(request.auth, ApiKey):
        return f"streams:key:{request.auth.prefix}"
    return f"streams:addr:{client_address(request)}"


@dataclass
class Place:
    """A place held by one stream or long poll (``counter`` None: not counted)."""

    key: str
    counter: SharedRedisCache | None
    lease: float
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)
    renewed: float = field(default_factory=time.monotonic)
    in_process: bool = False  # counted in process_holds

    def renew(self) -> None:
        """Extend the lease, at most every third of it (cheap to call on every wake-up)."""
        if self.counter is None or time.monotonic() - self.renewed < self.lease / 3:
            return
        self.renewed = time.monotonic()
        try:
            self.counter.renew_place(self.key, self.holder, self.lease)
        except RedisError as exc:
            logger.warning("a stream's place was not renewed, the cache's Redis failed: %s", exc)

    def release(self) -> None:
        if self.in_process:
            self.in_process = False
            process_holds.give()
        counter, self.counter = self.counter, None
        if counter is None:
            return
        try:
            counter.give_place(self.key, self.holder)
        except RedisError as exc:  # the lease ends it
            logger.warning("a stream's place was not given back, the cache's Redis failed: %s", exc)


def unheld() -> Place:
    """A place that counts nothing (for what ends at once)."""
    return Place("", None, LEASE_SECONDS)


def take(request: Request, *, lease: float = LEASE_SECONDS) -> Place:
    """A place for ``request`` to hold a stream or long poll: ``StreamsBusy`` when this
    process has none left, ``TooManyStreams`` when the client holds its share."""
    if not process_holds.take():
        raise StreamsBusy(
            wait=LEASE_SECONDS / 3,
            detail=f"this server holds {settings.API_MAX_STREAMS_PER_PROCESS} streams and long "
            "polls, all it may (API_MAX_STREAMS_PER_PROCESS); poll with If-None-Match.",
            code="streams_busy",
        )
    try:
        place = _take_client_place(request, lease)
    except BaseException:
        process_holds.give()
        raise
    place.in_process = True
    return place


def _take_client_place(request: Request, lease: float) -> Place:
    key, limit = client_key(request), settings.API_MAX_STREAMS_PER_CLIENT
    counter = shared_cache()
    if not limit or counter is None:
        return Place(key, None, lease)
    place = Place(key, counter, lease)
    try:
        taken, wait = counter.take_place(key, place.holder, limit, lease)
    except RedisError as exc:
        # As the rate limit: streams must not go down with the cache; uncounted, they pass.
        logger.warning("stream cap not applied, the cache's Redis failed: %s", exc)
        return Place(key, None, lease)
    if not taken:
        who = "this API key" if isinstance(request.auth, ApiKey) else "this address"
        raise TooManyStreams(
            wait=wait,
            detail=f"{who} already holds {limit} streams or long polls open, the most one "
            f"client may (API_MAX_STREAMS_PER_CLIENT); close one, or poll with If-None-Match.",
            code="too_many_streams",
        )
    return place


class Holding:
    """A streaming response's content that gives its place back when the response is closed,
    even if the stream never started (a generator's ``finally`` would not run then)."""

    def __init__(self, stream: Iterator[str], place: Place) -> None:
        self.stream, self.place = stream, place

    def __iter__(self) -> Iterator[str]:
        return self.stream

    def close(self) -> None:
        try:
            close: Any = getattr(self.stream, "close", None)
            if close is not None:
                close()
        finally:
            self.place.release()
