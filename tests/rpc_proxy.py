"""A flaky JSON-RPC proxy for tests: forwards to a real node (anvil) and misbehaves on purpose.

Public RPC endpoints fail in a handful of ways (5xx, dropped sockets, stalls, HTML error pages,
"block range too large"); this proxy reproduces each of them deterministically so the failover
and range-splitting code can be tested against a real chain rather than a mock.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

FAILURE_MODES: tuple[str, ...] = ("http500", "drop", "timeout", "garbage")
_BLOCK_TAGS_AT_HEAD = frozenset({"latest", "pending", "safe", "finalized"})


class FlakyRpcProxy:
    """A threaded HTTP server on 127.0.0.1 that forwards POST bodies to ``upstream``.

    - ``fail_every=N``: every Nth request (counting all requests) gets the next failure of
      ``modes``, cycling: "http500", "drop" (socket closed, no answer), "timeout" (no answer for
      ``timeout_sleep`` seconds; use a shorter client timeout) or "garbage" (200, non-JSON body).
      Injected failures never reach upstream, so a retried request runs there once.
    - ``max_log_range=N``: an ``eth_getLogs`` spanning more than N blocks gets the JSON-RPC error
      ``{"code": -32005, "message": "query exceeds max block range N"}``.
    - ``down = True``: every request gets HTTP 503 until it is set back to False.

    Counters: ``requests`` (HTTP requests), ``failures_injected``, ``refused`` (while down),
    ``methods`` (a Counter of JSON-RPC methods forwarded or refused by range, batch elements
    counted one by one). A JSON list body (a batch) is forwarded upstream as one request.
    """

    def __init__(
        self,
        upstream: str,
        *,
        fail_every: int | None = None,
        modes: Sequence[str] = FAILURE_MODES,
        timeout_sleep: float = 2.0,
        max_log_range: int | None = None,
        upstream_timeout: float = 30.0,
    ) -> None:
        unknown = set(modes) - set(FAILURE_MODES)
        if unknown or not modes:
            raise ValueError(f"modes must be a non-empty subset of {FAILURE_MODES}, not {modes}")
        self.upstream = upstream
        self.fail_every = fail_every
        self.modes = tuple(modes)
        self.timeout_sleep = timeout_sleep
        self.max_log_range = max_log_range
        self.lying_log_answers = 0  # set by a test: that many eth_getLogs answers get lied about
        self.lies_told = 0
        self.upstream_timeout = upstream_timeout
        self.down = False
        self.requests = 0
        self.failures_injected = 0
        self.refused = 0
        self.methods: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name=f"flaky-rpc-{self.url}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; stalled "timeout" handlers wake up and close their sockets."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"FlakyRpcProxy({self.url} -> {self.upstream}, requests={self.requests}, "
            f"failures_injected={self.failures_injected}, refused={self.refused})"
        )

    # -- decisions, called from handler threads --

    def _next_action(self) -> str:
        """'down', one of the failure modes, or 'forward'; counts the request."""
        with self._lock:
            self.requests += 1
            if self.down:
                self.refused += 1
                return "down"
            if self.fail_every and self.requests % self.fail_every == 0:
                mode = self.modes[self.failures_injected % len(self.modes)]
                self.failures_injected += 1
                return mode
            return "forward"

    def _count_methods(self, payload: Any) -> None:
        items = payload if isinstance(payload, list) else [payload]
        with self._lock:
            for item in items:
                if isinstance(item, dict):
                    self.methods[str(item.get("method"))] += 1

    def _post_upstream(self, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.upstream_timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError as exc:
            return 502, f"upstream unreachable: {exc}".encode()

    def _block_number(self, tag: Any) -> int:
        if isinstance(tag, int):
            return tag
        if tag is None or tag in _BLOCK_TAGS_AT_HEAD:
            _, raw = self._post_upstream(
                b'{"jsonrpc":"2.0","id":0,"method":"eth_blockNumber","params":[]}'
            )
            return int(json.loads(raw)["result"], 16)
        if tag == "earliest":
            return 0
        return int(tag, 16)

    def _range_error(self, item: Any) -> dict[str, Any] | None:
        """The JSON-RPC error answer for an eth_getLogs over ``max_log_range``, else None."""
        if self.max_log_range is None or not isinstance(item, dict):
            return None
        if item.get("method") != "eth_getLogs":
            return None
        params = item.get("params") or [{}]
        log_filter = params[0] if params and isinstance(params[0], dict) else {}
        if "blockHash" in log_filter:
            return None
        span = (
            self._block_number(log_filter.get("toBlock"))
            - self._block_number(log_filter.get("fromBlock"))
            + 1
        )
        if span <= self.max_log_range:
            return None
        return {
            "jsonrpc": "2.0",
            "id": item.get("id"),
            "error": {
                "code": -32005,
                "message": f"query exceeds max block range {self.max_log_range}",
            },
        }

    def _maybe_lie(self, raw: bytes) -> bytes:
        """While ``lying_log_answers`` lasts, give every log of an answer a wrong block hash, as
        a node answering from the losing side of a reorg would."""
        with self._lock:
            if self.lying_log_answers <= 0:
                return raw
            answer = json.loads(raw)
            if not answer.get("result"):
                return raw
            self.lying_log_answers -= 1
            self.lies_told += 1
        for entry in answer["result"]:
            entry["blockHash"] = "0x" + "ee" * 32
        return json.dumps(answer).encode()

    def _answer(self, body: bytes) -> tuple[int, bytes]:
        """Forward ``body``, answering over-range eth_getLogs (alone or in a batch) here."""
        try:
            payload = json.loads(body)
        except ValueError:
            return self._post_upstream(body)
        self._count_methods(payload)
        if not isinstance(payload, list):
            error = self._range_error(payload)
            if error:
                return 200, json.dumps(error).encode()
            status, raw = self._post_upstream(body)
            if payload.get("method") == "eth_getLogs" and status == 200:
                raw = self._maybe_lie(raw)
            return status, raw
        errors = [self._range_error(item) for item in payload]
        if not any(errors):
            return self._post_upstream(body)
        rest = [item for item, error in zip(payload, errors, strict=True) if error is None]
        answers = [error for error in errors if error is not None]
        if rest:
            status, raw = self._post_upstream(json.dumps(rest).encode())
            if status != 200:
                return status, raw
            upstream_answers = json.loads(raw)
            if not isinstance(upstream_answers, list):
                return status, raw
            answers.extend(upstream_answers)
        return 200, json.dumps(answers).encode()


def _make_handler(proxy: FlakyRpcProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = (
            "HTTP/1.1"  # keep-alive, like a real node: "drop" then hits a reused socket
        )
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            action = proxy._next_action()
            if action == "forward":
                self._send(*proxy._answer(body))
            elif action == "down":
                self._send(503, b"proxy is down", content_type="text/plain")
            elif action == "http500":
                self._send(500, b"injected failure", content_type="text/plain")
            elif action == "garbage":
                self._send(200, b"<html>502 Bad Gateway</html>", content_type="text/html")
            elif action == "timeout":
                proxy._stopping.wait(proxy.timeout_sleep)
                self._drop()
            else:  # "drop"
                self._drop()

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _drop(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest shows counters on failure instead

    return Handler
