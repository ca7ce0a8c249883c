"""The RabbitMQ broker rides out a RabbitMQ restart (mintsite/broker.py), on a real node.

A RabbitMQ node of its own (devtools.fleet.PrivateRabbitmq: the machine's server is never
restarted), stopped and started again while a send waits. Runs in ``make test-rabbitmq``; the
whole pipeline through such a restart: tests/test_soak.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from django.conf import settings

from chain.anvil import free_port
from devtools.fleet import PrivateRabbitmq
from foundation.broker_contents import RabbitmqContents
from mintsite.broker import RabbitmqBroker

pytestmark = [
    pytest.mark.rabbitmq,
    pytest.mark.skipif(
        settings.BROKER_KIND != "rabbitmq", reason="RabbitMQ's own: make test-rabbitmq runs it"
    ),
]
QUEUE = "restart-probe"


def message(n: int) -> dramatiq.Message:  # type: ignore[type-arg]
    return dramatiq.Message(queue_name=QUEUE, actor_name="probe", args=(n,), kwargs={}, options={})


def ready(node: PrivateRabbitmq) -> int:
    reader = RabbitmqContents(node.url, timeout=5)
    try:
        return reader.depths([QUEUE])[QUEUE]["ready"]
    finally:
        reader.close()


class Restart(threading.Thread):
    """``node.restart()`` in the background; ``join()`` raises what it raised."""

    def __init__(self, node: PrivateRabbitmq, down_seconds: float) -> None:
        super().__init__(name="rabbitmq-restart")
        self.node = node
        self.down_seconds = down_seconds
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self.node.restart(down_seconds=self.down_seconds)
        except BaseException as failure:
            self.failure = failure

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.failure is not None:
            raise RuntimeError(f"the restart failed: {self.failure}") from self.failure


@pytest.fixture
def node(tmp_path: Path) -> Iterator[PrivateRabbitmq]:
    server = PrivateRabbitmq(free_port(), tmp_path / "rabbitmq")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_send_during_a_restart_waits_for_rabbitmq_and_nothing_is_lost(
    node: PrivateRabbitmq,
) -> None:
    broker = RabbitmqBroker(url=node.url, confirm_delivery=True, outage_seconds=60)
    broker.enqueue(message(1))  # declares the queue: durable, the message persistent
    # Given RabbitMQ going down for a restart
    restart = Restart(node, down_seconds=2.0)
    restart.start()
    while node.process is not None:  # stopped once restart() has cleared it
        time.sleep(0.05)
    # When a message is sent while it is away
    started = time.monotonic()
    try:
        broker.enqueue(message(2))
    finally:
        restart.join()  # a node that did not come back says why, beside the send's error
    waited = time.monotonic() - started
    broker.close()
    # Then the send waited for it and went through, and the earlier message is still there
    assert waited > 1.0
    assert ready(node) == 2


def test_without_an_outage_allowance_a_send_fails_as_dramatiqs_own(
    node: PrivateRabbitmq,
) -> None:
    broker = RabbitmqBroker(url=node.url, confirm_delivery=True, outage_seconds=0)
    broker.enqueue(message(1))
    node.stop()
    with pytest.raises(dramatiq.errors.ConnectionClosed):
        broker.enqueue(message(2))
    broker.close()


def test_a_node_whose_distribution_port_was_taken_starts_on_another(tmp_path: Path) -> None:
    # Given another program holding the distribution port the node was given (CI once saw an
    # outgoing connection take it between free_port() and the node's bind)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        server = PrivateRabbitmq(free_port(), tmp_path / "rabbitmq", dist_port=taken)
        # When the node starts
        server.start()
        try:
            # Then it takes messages, on a distribution port of its own, and its log says why
            broker = RabbitmqBroker(url=server.url, confirm_delivery=True)
            broker.enqueue(message(1))
            broker.close()
            assert ready(server) == 1
            assert server.dist_port != taken
            log = (tmp_path / f"rabbitmq-{server.port}.log").read_text()
            assert f"dist_port_already_used,{taken}" in log
        finally:
            server.stop()
