"""How many SSE clients the web tier holds while the status endpoint keeps its target.

Streams (``GET .../tokens/<id>/stream/``, each on a connection of its own, as a mint page opens
one) are added in steps; at each step, once every new stream has had its first event or has
waited long enough, a few probe clients poll other tokens' status (If-None-Match, as the mint
page does when it polls) and the p95 of their answers is compared with the 50 ms target. A
stream holds one gunicorn thread for its whole life (up to ``API_STREAM_MAX_SECONDS``), so the
figure follows ``workers x threads``; this step measures what it is on this machine, headroom
for the pollers included.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

from devtools.load.measures import Probe, percentile
from devtools.load.options import SLUG, TARGET_P95_MS, LoadOptions

OPENED, HELD, REFUSED, ENDED = "opened", "held", "refused", "ended"


class StreamClients:
    """SSE connections held open, a thread each, reading and dropping what the server sends.

    A stream is ``held`` once its first ``event: token`` has come (the server has given it a
    thread); ``opened`` until then (waiting for a thread); ``refused`` on any answer but 200;
    ``ended`` when the server closed it."""

    def __init__(self, base_url: str) -> None:
        self.address = urlsplit(base_url)
        self._lock = threading.Lock()
        self._state: dict[int, str] = {}
        self._connections: list[http.client.HTTPConnection] = []

    def open(self, path: str) -> None:
        connection = http.client.HTTPConnection(self.address.netloc)
        with self._lock:
            index = len(self._state)
            self._state[index] = OPENED
            self._connections.append(connection)
        threading.Thread(
            target=self._hold, args=(index, connection, path), name="sse", daemon=True
        ).start()

    def _hold(self, index: int, connection: http.client.HTTPConnection, path: str) -> None:
        state = ENDED
        try:
            connection.request("GET", path, headers={"Accept": "text/event-stream"})
            response = connection.getresponse()
            if response.status != 200:
                state = REFUSED
                return
            while line := response.readline():
                if line.startswith(b"event: token"):
                    self._set(index, HELD)
        except (OSError, http.client.HTTPException):
            pass  # shut down by close(), or closed by the server
        finally:
            self._set(index, state)
            connection.close()

    def _set(self, index: int, state: str) -> None:
        with self._lock:
            self._state[index] = state

    def __len__(self) -> int:
        with self._lock:
            return len(self._state)

    def states(self) -> Counter[str]:
        with self._lock:
            return Counter(self._state.values())

    def settle(self, seconds: float) -> Counter[str]:
        """Wait (at most ``seconds``) until no stream is still waiting for its first event."""
        deadline = time.monotonic() + seconds
        while self.states()[OPENED] and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.states()

    def close(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # shut down, not close: each connection's reader thread is still using it
            if connection.sock is not None:
                with suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)


def stream_capacity(
    options: LoadOptions, url: str, token_ids: list[int], say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Streams in steps of ``options.sse_step`` until the status endpoint misses its target
    (or ``options.sse_max`` streams are asked for): each step's figures, and the most streams
    held open with the target kept."""
    probes_on = token_ids[-options.sse_probes :]
    streamed = token_ids[: -options.sse_probes]
    clients = StreamClients(url)
    steps: list[dict[str, Any]] = []
    capacity = 0
    try:
        count = 0
        while True:
            for token_id in streamed[len(clients) : count]:
                clients.open(f"/api/collections/{SLUG}/tokens/{token_id}/stream/")
            states = clients.settle(10.0)
            step = {"streams": count, "states": dict(states), **_probe(options, url, probes_on)}
            # a stream refused (503 streams_busy: the process keeps threads for the polls)
            # leaves its mint page polling; one waiting for a thread leaves it waiting
            step["kept"] = step["p95"] < TARGET_P95_MS and not step["errors"] and not states[OPENED]
            steps.append(step)
            say(
                f"{count} streams ({states[HELD]} held, {states[OPENED]} waiting for a thread, "
                f"{states[REFUSED]} refused): status p95 {step['p95']:.1f} ms, "
                f"{step['errors']} errors"
            )
            if not step["kept"]:
                break
            capacity = max(capacity, states[HELD])
            if count + options.sse_step > min(options.sse_max, len(streamed)):
                break
            count += options.sse_step
    finally:
        clients.close()
    return {
        "capacity": capacity,
        "asked": max((step["streams"] for step in steps if step["kept"]), default=0),
        "steps": steps,
        "probes": options.sse_probes,
        "seconds": options.sse_seconds,
    }


def _probe(options: LoadOptions, url: str, token_ids: list[int]) -> dict[str, Any]:
    """``options.sse_probes`` clients polling for ``options.sse_seconds``: p50 and p95 of all."""
    probes = [Probe(url, f"/api/collections/{SLUG}/tokens/{t}/") for t in token_ids]
    for probe in probes:
        probe.start()
    time.sleep(options.sse_seconds)
    for probe in probes:
        probe.stop()
    times = sorted(t for probe in probes for t in probe.times_ms)
    return {
        "polls": len(times),
        "errors": sum(probe.errors for probe in probes),
        "p50": percentile(times, 50) if times else float("inf"),
        "p95": percentile(times, 95) if times else float("inf"),
    }
