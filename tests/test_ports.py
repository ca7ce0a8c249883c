"""``free_port`` (chain/anvil.py), which every test server and the embedded stack are started on:
a port no outgoing connection can take before the server binds it, or while it is down for a
restart (CI once saw a restarted RabbitMQ node find its port taken)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from chain import anvil
from chain.anvil import free_port


def test_it_hands_out_free_ports_below_the_range_outgoing_connections_draw_from() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(200)]
    assert all(10_000 <= port < low for port in ports)
    assert len(set(ports)) == len(ports)  # never the same one twice in a process
    # each one can be bound by the server it is for
    for port in ports[:20]:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_it_skips_a_port_something_already_listens_on(monkeypatch: pytest.MonkeyPatch) -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    # the port a picker seeded so would draw first: free_port gives it while it is free
    first = random.Random(7).randrange(10_000, low)
    monkeypatch.setattr(anvil, "_handed_out", set())
    monkeypatch.setattr(anvil, "_picker", random.Random(7))
    assert free_port() == first
    # and passes it over while something listens on it
    monkeypatch.setattr(anvil, "_handed_out", set())
    monkeypatch.setattr(anvil, "_picker", random.Random(7))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", first))
        busy.listen()
        assert free_port() != first
