"""What every benchmark checks before it starts (devtools/preflight.py): a namespace of its own,
and a broker that answers, RabbitMQ included, named without its password."""

from __future__ import annotations

import socket

import pytest

from devtools.errors import BenchmarkError
from devtools.preflight import bench_namespace, check_queue_broker


def test_a_benchmark_refuses_the_stacks_own_namespace(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DRAMATIQ_NAMESPACE = "mint"
    with pytest.raises(BenchmarkError, match="set DRAMATIQ_NAMESPACE"):
        bench_namespace()


def test_a_benchmark_on_rabbitmq_stops_at_once_when_it_does_not_answer(settings) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.BROKER_KIND = "rabbitmq"
    settings.BROKER_URL = f"amqp://bench:s3cret@127.0.0.1:{port}/mint-bench"
    with pytest.raises(BenchmarkError) as excinfo:
        check_queue_broker()
    message = str(excinfo.value)
    assert f"RabbitMQ at 127.0.0.1:{port}" in message and "Connection refused" in message
    assert "s3cret" not in message
