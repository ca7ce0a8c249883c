"""Locust users for ``manage.py bench_load``: collectors watching their token's status.

Each user is one collector with the mint page open on one token, polling the token status
endpoint the way ``mintsite/static/mintsite/mint.js`` does when it polls: a GET with the ETag of
the copy it holds in If-None-Match, answered 304 while nothing changed, then a pause of the
page's ``poll_interval_ms`` (1.5 s) after each answer. User *n* watches token
``first + n mod count`` of the collection, so every watched token has one watcher.

Run by ``bench_load`` as its own process (``locust -f devtools/load/loadtest.py --headless ...``),
or as several (``--processes N``: one event loop each, so that no loop is the bottleneck); it
imports no Django. At the end each process that made requests writes every answer's status
code and response time to ``<--results-file>.<pid>`` (JSON), from which ``bench_load``
computes exact percentiles (locust's own are rounded to two significant digits).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from typing import Any

from locust import FastHttpUser, constant, events, task

POLL_INTERVAL_S = 1.5  # mint page: config.poll_interval_ms (mintsite/pages/views.py)
_next_user = itertools.count()
_codes: Counter[str] = Counter()
_times_ms: list[float] = []
_failures = [0]
_span = [float("inf"), 0.0]  # first request sent, last answer received (epoch seconds)


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--collection", default="bench-load", help="the watched collection")
    parser.add_argument("--first-token", type=int, default=1, help="the first watched token id")
    parser.add_argument("--token-count", type=int, default=200, help="how many tokens to watch")
    parser.add_argument("--results-file", default="", help="write codes and times here (JSON)")
    parser.add_argument("--client-processes", type=int, default=1, help="what --processes says")


@events.request.add_listener
def _count(response_time: float, response: Any = None, exception: Any = None, **_: Any) -> None:
    code = getattr(response, "status_code", None)
    _codes[str(code) if code else type(exception).__name__ if exception else "none"] += 1
    _times_ms.append(response_time)
    now = time.time()
    _span[0], _span[1] = min(_span[0], now - response_time / 1000), max(_span[1], now)
    if exception is not None:
        _failures[0] += 1


@events.quitting.add_listener
def _write_results(environment: Any, **_: Any) -> None:
    path = environment.parsed_options.results_file
    if path and _times_ms:
        with open(f"{path}.{os.getpid()}", "w") as out:
            json.dump({"codes": _codes, "times_ms": _times_ms, "failures": _failures[0],
                       "seconds": max(0.0, _span[1] - _span[0])}, out)  # fmt: skip


class Collector(FastHttpUser):
    wait_time = constant(POLL_INTERVAL_S)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        # one watcher per token across the processes: process i takes i, i + N, i + 2N, ...
        index = getattr(self.environment.runner, "worker_index", 0)
        n = next(_next_user) * options.client_processes + index
        token_id = options.first_token + n % options.token_count
        self.url = f"/api/collections/{options.collection}/tokens/{token_id}/"
        self.token_id = token_id
        self.etag: str | None = None

    @task
    def poll_status(self) -> None:
        headers = {"Accept": "application/json"}
        if self.etag:
            headers["If-None-Match"] = self.etag
        with self.client.get(
            self.url, headers=headers, name="token status", catch_response=True
        ) as response:
            if response.status_code == 304:
                response.success()
            elif response.status_code == 200:
                doc = response.json()
                if doc.get("token_id") != self.token_id:
                    response.failure(f"the document is of token {doc.get('token_id')}")
                    return
                self.etag = response.headers.get("ETag")
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
