"""What a phase measures: the load client's answers, a probe client's, and CPU per process."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from devtools.errors import BenchmarkError


class Probe:
    """One more collector, outside locust: polls a token's status every ``interval`` seconds
    over a kept-alive connection (If-None-Match, as the mint page does) and times each answer.

    Locust runs its 200 users on one Python event loop, and its response times include the
    time a finished response waits for that loop; this client, in the benchmark's own mostly
    idle process, measures what one more collector sees of the same server under the same load.
    """

    def __init__(self, base_url: str, path: str, interval: float = 0.1) -> None:
        import threading
        from urllib.parse import urlsplit

        self.address = urlsplit(base_url)
        self.path, self.interval = path, interval
        self.times_ms: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        import http.client

        connection = http.client.HTTPConnection(
            self.address.hostname, self.address.port, timeout=10
        )
        etag = None
        while not self._stop.wait(self.interval):
            headers = {"Accept": "application/json", **({"If-None-Match": etag} if etag else {})}
            began = time.perf_counter()
            try:
                connection.request("GET", self.path, headers=headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                connection.close()
                continue
            self.times_ms.append((time.perf_counter() - began) * 1000)
            if response.status == 200:
                etag = response.getheader("ETag")
            elif response.status != 304:
                self.errors += 1
        connection.close()

    def percentiles(self) -> dict[str, float]:
        ordered = sorted(self.times_ms)
        if not ordered:
            return {"count": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
        return {
            "count": len(ordered),
            "p50": percentile(ordered, 50),
            "p95": percentile(ordered, 95),
            "p99": percentile(ordered, 99),
        }


def client_results(scratch: Path, results_file: Path, tag: str) -> dict[str, Any]:
    """requests, failures, codes, seconds and latency p50/p95/p99/max (ms) of the load client:
    exact from every locust process's answer times, or wrk's own histogram."""
    log = scratch / f"locust-{tag}.log"
    wrk = results_file.with_name(results_file.name + ".wrk")
    if wrk.exists():
        r = json.loads(wrk.read_text())
        if not r["requests"]:
            raise BenchmarkError(f"wrk made no requests: see {log}")
        codes = Counter(r["codes"])
        failures = r["socket_errors"] + sum(n for c, n in codes.items() if c not in ("200", "304"))
        return {
            "requests": r["requests"], "failures": failures, "codes": codes,
            "seconds": r["seconds"], "p50": r["p50"], "p95": r["p95"], "p99": r["p99"],
            "max": r["max"],
        }  # fmt: skip
    parts = [json.loads(p.read_text()) for p in scratch.glob(f"{results_file.name}.*")]
    times = sorted(t for part in parts for t in part["times_ms"])
    if not times:
        raise BenchmarkError(f"the load client made no requests: see {log}")
    return {
        "requests": len(times),
        "failures": sum(part["failures"] for part in parts),
        "codes": sum((Counter(part["codes"]) for part in parts), Counter()),
        "seconds": max(part["seconds"] for part in parts),
        "p50": percentile(times, 50),
        "p95": percentile(times, 95),
        "p99": percentile(times, 99),
        "max": times[-1],
    }


def cpu_seconds(process: Any) -> dict[int, float]:
    """User + system CPU seconds of a process and each of its living children (gunicorn's
    workers, dramatiq's worker processes), by pid."""
    import psutil

    try:
        tree = [process, *process.children(recursive=True)]
    except psutil.Error:  # it has exited
        return {}
    seconds = {}
    for p in tree:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        seconds[p.pid] = times.user + times.system
    return seconds


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two snapshots; a process that started in between counts from zero
    (gunicorn recycles a worker after max_requests), one that ended in between is lost."""
    return sum(used - before.get(pid, 0.0) for pid, used in after.items())


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def percentile(ordered: list[float], percent: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]
