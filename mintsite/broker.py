"""The Redis client the Dramatiq broker uses: one that rides out a Redis restart.

Dramatiq's ``RedisBroker(url=...)`` builds a connection pool that never retries, so a Redis
restart of even a second surfaces as a connection error in every thread that talks to it, and
two things are then lost for good (docs/faults.md): a message an actor sends during the outage
(a failed ``send`` inside an actor is retried by Dramatiq's ``Retries``, whose own re-enqueue
fails too, and the message is then acked), and the delayed messages a worker holds in memory
(its consumer drops them on a connection error while they stay in its ack set in Redis, with
the worker alive and so never found dead). A client that retries every command for
``outage_seconds`` makes a restart shorter than that invisible to Dramatiq: commands wait,
then go through.
"""

from __future__ import annotations

import math

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry


def redis_client(url: str, *, outage_seconds: float) -> redis.Redis:
    """A client for ``url`` whose every command is retried, backing off up to one second
    between tries, for about ``outage_seconds`` in all (0: no retries, Dramatiq's own)."""
    # 0.05 + 0.1 + 0.2 + 0.4 + 0.8 s, then 1 s per retry: ceil(outage) + 4 retries cover it.
    retries = math.ceil(outage_seconds) + 4 if outage_seconds > 0 else 0
    return redis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[ConnectionError, TimeoutError],
        # a server that accepts but never answers must not hang a worker thread for ever
        socket_connect_timeout=5,
        socket_timeout=30,
    )
