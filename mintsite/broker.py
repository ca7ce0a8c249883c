"""The Dramatiq broker's connections, riding out a broker restart: Redis's client, and
RabbitMQ's broker (``BROKER_URL=amqp://...``, :class:`RabbitmqBroker`).

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
import time
from typing import Any

import dramatiq
import dramatiq.brokers.rabbitmq
import dramatiq.common
import dramatiq.errors
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


class RabbitmqBroker(dramatiq.brokers.rabbitmq.RabbitmqBroker):
    """Dramatiq's RabbitMQ broker, riding out a RabbitMQ restart as :func:`redis_client` does
    Redis's, with the dead-letter lifetime from the settings.

    Dramatiq retries a failed publish 6 times at once, reconnecting each time, and then raises:
    a send during a restart of a few seconds fails, and a message an actor sends then is lost
    as on Redis (docs/faults.md). Here every send is retried, backing off up to one second
    between tries, for ``outage_seconds``. ``confirm_delivery`` (on in the settings) makes a
    send return only once RabbitMQ has taken the message (persistent, on a durable queue), so
    a broker dying under a send makes the send fail and be retried, never vanish.

    The worker side needs nothing more: a consumer that loses its connection reconnects every
    3 s (dramatiq's worker) and RabbitMQ puts back every message the dead connection held, the
    delayed ones included, so they are delivered again.
    """

    def __init__(
        self, *, outage_seconds: float = 0.0, dead_message_ttl: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.outage_seconds = outage_seconds
        # Dramatiq reads it from its own environment variable; the settings name it as on Redis.
        # RabbitMQ fixes it when the .XQ queue is first declared (a queue's arguments cannot
        # change): a new value needs those queues deleted while empty.
        self.dead_message_ttl = dead_message_ttl or dramatiq.brokers.rabbitmq.DEAD_MESSAGE_TTL

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(
            queue=dramatiq.common.xq_name(queue_name),
            durable=True,
            arguments={"x-message-ttl": self.dead_message_ttl},
        )

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> Any:
        deadline = time.monotonic() + self.outage_seconds
        pause = 0.05
        while True:
            try:
                return super().enqueue(message, delay=delay)
            except dramatiq.errors.ConnectionClosed:
                if time.monotonic() + pause > deadline:
                    raise
                self.logger.warning("RabbitMQ is not answering; sending again in %.2f s", pause)
                time.sleep(pause)
                pause = min(1.0, pause * 2)
