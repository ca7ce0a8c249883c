"""What a Dramatiq broker holds, read from outside its workers, on Redis or RabbitMQ.

Two readings: per queue, how many messages wait in each state (the metrics, ``/readyz``, the
soak's report); and the messages themselves (``redrive``, generation/redrive.py, which must
know which tokens still have a message on its way). ``BROKER_URL`` picks the broker
(mintsite/settings.py); :func:`contents` opens a reader for it.

**Redis** (dramatiq/brokers/redis/dispatch.lua) keeps everything in keys anyone can read
without taking anything: ``<ns>:<q>`` lists the ids waiting to be fetched, the hash
``<ns>:<q>.msgs`` every message not yet acknowledged (waiting, or taken by a worker),
``<ns>:<q>.DQ.msgs`` the delayed ones (wherever they are) and the sorted set ``<ns>:<q>.XQ``
the dead-lettered ones. Every state is counted and every message read.

**RabbitMQ** (dramatiq/brokers/rabbitmq.py) has three durable queues per queue ``q``: ``q``,
``q.DQ`` (delayed messages: a worker takes each at once and holds it, unacknowledged, until its
eta, then publishes it on ``q`` and acknowledges it) and ``q.XQ`` (the dead letters: ``q`` and
``q.DQ`` route a rejected message there). AMQP reads a message only by taking it, and a
message a live consumer holds unacknowledged (being processed, prefetched, or a delayed one
waiting in a worker's memory) can be neither read nor counted by any client: RabbitMQ gives it
back to its queue only when that consumer rejects it or its connection closes (the worker
stopped, died or lost the broker). So:

- counts come from a passive ``queue.declare`` of ``q``, ``q.DQ`` and ``q.XQ``: the messages
  *ready* in each, no consumer holding them. ``in_flight`` is not known (left out, never
  reported as 0); ``delayed`` counts only the delayed messages no worker has taken yet. The
  management plugin's HTTP API would count held messages, but it is an optional plugin (not
  enabled on a stock server) and cannot read them either, so nothing here depends on it.
- messages: each ready message of ``q`` and ``q.DQ`` is taken with ``basic.get`` without
  acknowledgement and given back by closing the channel: RabbitMQ requeues unacknowledged
  messages at their original place in a classic queue (the kind Dramatiq declares), and would
  do the same if this process died while holding them. Each costs a round trip, and the
  messages read are out of the workers' reach for that time (a backlog of 10,000: seconds).
  Messages held by live workers are not seen: ``redrive`` may then send a token a second
  message, which its stage ignores (every stage takes only tokens at its own status).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)

BrokerKind = Literal["redis", "rabbitmq"]
SCHEMES: dict[str, BrokerKind] = {
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
}
# A queue's states, as the metrics name them (mint_queue_messages{state}).
STATES = ("ready", "in_flight", "delayed", "dead")


def broker_kind(url: str, name: str = "BROKER_URL") -> BrokerKind:
    """``redis`` or ``rabbitmq``, from the URL's scheme; anything else is a configuration
    error naming ``name``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise ImproperlyConfigured(
            f"{name} must be a redis://, rediss:// or unix:// URL (Redis) or an amqp:// or "
            f"amqps:// URL (RabbitMQ), not {scheme + '://' if scheme else repr(url)}"
        )
    return SCHEMES[scheme]


class BrokerContents(Protocol):
    """A reader of one broker's queues; ``close`` it when done."""

    def describe(self) -> str:
        """One line for ``/readyz``: which broker, reached (a round trip is made)."""
        ...

    def depths(self, queues: Iterable[str]) -> dict[str, dict[str, int]]:
        """Messages per queue and state (:data:`STATES`; a state the broker cannot count is
        left out)."""
        ...

    def messages(self, queues: Iterable[str]) -> Iterator[dict[str, Any]]:
        """The messages (Dramatiq's JSON, decoded) the broker holds for ``queues``: waiting or
        delayed, and in flight where the broker can read those (Redis)."""
        ...

    def dead_messages(self, queue: str) -> list[dict[str, Any]]:
        """The messages dead-lettered from ``queue`` and not yet expired."""
        ...

    def close(self) -> None: ...


def _decode(where: str, raw: bytes | str) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except ValueError:
        log.warning("%s holds a message that is not JSON", where)
        return None
    return message if isinstance(message, dict) else None


# --- Redis ------------------------------------------------------------------------------------


def redis_queue_depths(
    client: Any, namespace: str, queues: Iterable[str]
) -> dict[str, dict[str, int]]:
    """Messages per queue and state, read the way Dramatiq's Redis broker keeps them (the
    module doc). One MULTI, so the states add up."""
    queues = list(queues)
    pipe = client.pipeline(transaction=True)
    for queue in queues:
        key = f"{namespace}:{queue}"
        pipe.llen(key)
        pipe.hlen(f"{key}.msgs")
        pipe.hlen(f"{key}.DQ.msgs")
        pipe.zcard(f"{key}.XQ")
    answers = pipe.execute()
    depths = {}
    for i, queue in enumerate(queues):
        ready, unacked, delayed, dead = answers[4 * i : 4 * i + 4]
        depths[queue] = {
            "ready": ready,
            "in_flight": max(0, unacked - ready),
            "delayed": delayed,
            "dead": dead,
        }
    return depths


class RedisContents:
    """A Redis broker's keys under ``namespace``, through ``client`` (closed by ``close``
    only when ``owned``: the broker's own client is shared)."""

    def __init__(self, client: Any, namespace: str, *, owned: bool = True) -> None:
        self.client, self.namespace, self.owned = client, namespace, owned

    def describe(self) -> str:
        self.client.ping()
        return f"redis, namespace {self.namespace}"

    def depths(self, queues: Iterable[str]) -> dict[str, dict[str, int]]:
        return redis_queue_depths(self.client, self.namespace, queues)

    def messages(self, queues: Iterable[str]) -> Iterator[dict[str, Any]]:
        for queue in queues:
            for key in (f"{self.namespace}:{queue}.msgs", f"{self.namespace}:{queue}.DQ.msgs"):
                for _, data in self.client.hscan_iter(key, count=1000):
                    message = _decode(key, data)
                    if message is not None:
                        yield message

    def dead_messages(self, queue: str) -> list[dict[str, Any]]:
        key = f"{self.namespace}:{queue}.XQ.msgs"
        found = (_decode(key, raw) for raw in self.client.hvals(key))
        return [message for message in found if message is not None]

    def close(self) -> None:
        if self.owned:
            self.client.close()


# --- RabbitMQ ---------------------------------------------------------------------------------


def rabbitmq_parameters(url: str, timeout: float) -> Any:
    """pika's parameters for ``url``, one connection attempt and every wait bounded by
    ``timeout`` seconds (a query string in the URL may set others)."""
    import pika

    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = timeout
    parameters.stack_timeout = timeout
    parameters.blocked_connection_timeout = timeout
    return parameters


class _QueueNotDeclaredYet(logging.Filter):
    """Drops pika's warning for a passive declare of a queue that does not exist yet (a queue
    no worker has declared: the sales queue where no sale worker runs), which every scrape
    would otherwise log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NOT_FOUND - no queue" not in record.getMessage()


class RabbitmqContents:
    """A RabbitMQ broker's queues, through one connection of its own (the module doc)."""

    def __init__(self, url: str, timeout: float) -> None:
        import pika
        import pika.exceptions

        channel_log = logging.getLogger("pika.channel")
        if not any(isinstance(f, _QueueNotDeclaredYet) for f in channel_log.filters):
            channel_log.addFilter(_QueueNotDeclaredYet())
        self.parameters = rabbitmq_parameters(url, timeout)
        try:
            self.connection = pika.BlockingConnection(self.parameters)
        except pika.exceptions.AMQPConnectionError as exc:
            # pika's own message is empty: the cause is in the repr of its arguments
            reason = "; ".join(repr(arg) for arg in exc.args) or type(exc).__name__
            p = self.parameters
            raise ConnectionError(f"RabbitMQ at {p.host}:{p.port}: {reason}") from exc

    def describe(self) -> str:
        self.connection.channel().close()  # a round trip: the broker answers
        p = self.parameters
        return f"rabbitmq at {p.host}:{p.port}, vhost {p.virtual_host}"

    def _ready(self, channel: Any, name: str) -> tuple[Any, int]:
        """(the channel to go on with, the messages ready in queue ``name``); a queue not
        declared yet holds none (the broker closes a channel that asks for a missing queue)."""
        import pika.exceptions

        try:
            return channel, channel.queue_declare(name, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            return self.connection.channel(), 0

    def depths(self, queues: Iterable[str]) -> dict[str, dict[str, int]]:
        channel = self.connection.channel()
        depths = {}
        try:
            for queue in queues:
                channel, ready = self._ready(channel, queue)
                channel, delayed = self._ready(channel, f"{queue}.DQ")
                channel, dead = self._ready(channel, f"{queue}.XQ")
                depths[queue] = {"ready": ready, "delayed": delayed, "dead": dead}
        finally:
            if channel.is_open:
                channel.close()
        return depths

    def messages(self, queues: Iterable[str]) -> Iterator[dict[str, Any]]:
        for queue in queues:
            for name in (queue, f"{queue}.DQ"):
                yield from self._peek(name)

    def dead_messages(self, queue: str) -> list[dict[str, Any]]:
        return self._peek(f"{queue}.XQ")

    def _peek(self, name: str) -> list[dict[str, Any]]:
        """Every message ready in queue ``name``, taken and given back (the module doc). At
        most as many as were ready when it started: what arrives meanwhile is new."""
        channel, ready = self._ready(self.connection.channel(), name)
        found: list[dict[str, Any]] = []
        try:
            for _ in range(ready):
                method, _properties, body = channel.basic_get(name, auto_ack=False)
                if method is None:  # a worker took the rest meanwhile
                    break
                message = _decode(name, body)
                if message is not None:
                    found.append(message)
        finally:
            if channel.is_open:
                channel.close()  # every message taken goes back where it was
        return found

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def contents(timeout: float) -> BrokerContents:
    """A reader of the configured broker (``settings.BROKER_URL``) with its own connection,
    whose every wait is bounded by ``timeout`` seconds: the metrics and ``/readyz`` must
    answer while the broker is away, where the workers' own client waits for it."""
    from django.conf import settings

    if settings.BROKER_KIND == "rabbitmq":
        return RabbitmqContents(settings.BROKER_URL, timeout)
    import redis

    client = redis.Redis.from_url(
        settings.BROKER_URL,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
    )
    return RedisContents(client, settings.DRAMATIQ_NAMESPACE)
