"""What every benchmark needs before it starts, and the throwaway database it runs on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings
from django.db import connection

from devtools.errors import BenchmarkError


def bench_namespace() -> str:
    """The broker namespace, refused when it is the stack's own: a running stack's workers
    would take the benchmark's messages."""
    namespace: str = settings.DRAMATIQ_NAMESPACE
    if namespace == "mint":
        raise BenchmarkError("set DRAMATIQ_NAMESPACE (e.g. mint-bench) so a running stack's "
                             "workers do not take the benchmark's messages")  # fmt: skip
    return namespace


def broker_client() -> redis.Redis:
    """A client of REDIS_URL that has answered a ping."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        raise BenchmarkError(
            f"no broker at {settings.REDIS_URL}: start one (make run) or set REDIS_URL"
        ) from exc
    return client


@contextmanager
def throwaway_database() -> Iterator[None]:
    """Django's test database for the run (the stack's own is never touched), dropped after."""
    original = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(original, verbosity=0)


def check_queue_broker() -> None:
    """With ``BROKER_URL=amqp://…`` the queues are RabbitMQ's: it must answer too (``make
    bench…`` runs each benchmark in a vhost of its own, tests/with_broker.py)."""
    if settings.BROKER_KIND != "rabbitmq":
        return  # the queues are the Redis that broker_client() pinged
    from foundation.broker_contents import contents

    try:
        reader = contents(5.0)
    except ConnectionError as exc:  # names the host and pika's reason, never the password
        raise BenchmarkError(f"no queue broker: {exc}; start it or fix BROKER_URL") from exc
    reader.close()


@contextmanager
def bench_broker() -> Iterator[redis.Redis]:
    """The checked broker (and Redis, which holds the caches either way); the benchmark's
    Redis keys (its namespace's) are deleted after the run."""
    namespace = bench_namespace()
    client = broker_client()
    check_queue_broker()
    try:
        yield client
    finally:
        for key in client.scan_iter(f"{namespace}*"):
            client.delete(key)
