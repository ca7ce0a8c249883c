"""Token status changes, heard by each web process once instead of read by every waiting request.

Whichever process records a token's new stage (``generation.events.record``: the workers, the
chain listener, the admin, a requeue) publishes the token's id on a Redis channel once the
change commits (:func:`publish_events`, subscribed in mintsite/apps.py). Each web process runs
one thread subscribed to the channel, started by the first request that waits
(:func:`watching`); it wakes the streams and long polls waiting on those tokens, which read
the database only then, and every ``API_RECHECK_SECONDS`` anyway: a notice can be lost (Redis
restarting, a change made without a stage event), and a late answer is all that costs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from redis.exceptions import RedisError

from generation.models import TokenEvent
from mintsite.cache import shared_cache

log = logging.getLogger(__name__)

CHANNEL = "token-events"


def publish_events(events: list[TokenEvent]) -> None:
    """A ``generation.events`` subscriber: the ids of the tokens that moved, to every web
    process (space-separated in one message)."""
    counter = shared_cache()
    if counter is None or not events:
        return
    pks = sorted({event.token_id for event in events})
    try:
        counter.publish(CHANNEL, " ".join(map(str, pks)))
    except RedisError as exc:  # waiting requests find the change at their next re-check
        log.warning("token changes not announced, the cache's Redis failed: %s", exc)


class Notifier:
    """This process's subscriber, and the requests waiting on each token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, set[threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0

    @contextmanager
    def watching(self, token_pk: int) -> Iterator[threading.Event]:
        """An event set whenever ``token_pk`` may have changed: register before reading the
        token, then wait on it, clear it, and read again."""
        changed = threading.Event()
        with self._lock:
            self._start()
            self._waiting.setdefault(token_pk, set()).add(changed)
        try:
            yield changed
        finally:
            with self._lock:
                waiting = self._waiting.get(token_pk)
                if waiting is not None:
                    waiting.discard(changed)
                    if not waiting:
                        del self._waiting[token_pk]

    def waiting(self) -> int:
        """How many requests wait on a token in this process."""
        with self._lock:
            return sum(len(events) for events in self._waiting.values())

    def _start(self) -> None:
        # per process: gunicorn forks its workers from a master that may have imported this
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._listen, name="token-notifier", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        pause = 0.5
        while True:
            counter = shared_cache()
            if counter is None:
                return  # no Redis cache: waiting requests re-check on their own
            subscriber = counter.subscriber()
            try:
                subscriber.subscribe(counter.channel(CHANNEL))
                while True:
                    message = subscriber.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        # (re)subscribed: anything said while not listening was missed
                        self._wake(None)
                        pause = 0.5
                    elif message["type"] == "message":
                        self._wake(message["data"])
            except RedisError as exc:
                log.warning("token notices interrupted, the cache's Redis failed: %s", exc)
            finally:
                with suppress(RedisError):
                    subscriber.close()
            time.sleep(pause)
            pause = min(pause * 2, 10.0)

    def _wake(self, data: bytes | None) -> None:
        """Wake the requests waiting on the tokens in ``data``, or on every token (None)."""
        with self._lock:
            if data is None:
                targets = [e for events in self._waiting.values() for e in events]
            else:
                targets = [
                    e for pk in data.split() if pk.isdigit() for e in self._waiting.get(int(pk), ())
                ]
        for event in targets:
            event.set()


notifier = Notifier()
watching = notifier.watching
