"""``/healthz`` (the process is up) and ``/readyz`` (what it depends on is reachable).

``/healthz`` touches nothing: a load balancer or an orchestrator's liveness probe restarts a
process that stops answering it, and restarting the web tier never fixes a database outage.
``/readyz`` checks the database, the broker, each chain's RPC and the IPFS backend (through the
backend's own ``check``, :mod:`ipfs.backends`), each with a short timeout
(``HEALTH_CHECK_TIMEOUT`` seconds) and all at once, and answers 503 when any fails, with a JSON
body naming each check, how long it took, and its error. Those details name internal hosts and
paths: with ``METRICS_TOKEN`` set (always in production) they need it as a bearer token, and
without it the answer is the status alone, 200 or 503, which is all a load balancer reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from chain.errors import ChainMismatch
from chain.rpc import redact_url
from foundation import broker_contents
from ipfs.backends import pinner_from_settings
from ipfs.errors import BackendUnavailable, IpfsError
from mintsite.errors import ChainReadError, CheckFailed
from mintsite.observability.access import has_metrics_access
from mintsite.observability.metrics import chain_targets, rpc_batch


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    results = run_checks()
    ready = all(result["ok"] for result in results)
    body: dict[str, Any] = {"status": "ready" if ready else "not ready"}
    if has_metrics_access(request):
        body["checks"] = results
    else:  # a load balancer needs only the status code; hosts and paths are the operator's
        body["checks_hidden"] = "send Authorization: Bearer <METRICS_TOKEN> for each check"
    return JsonResponse(body, status=200 if ready else 503)


def run_checks() -> list[dict[str, Any]]:
    """Every check's result: ``{"name", "ok", "ms", "detail" | "error"}``, database first."""
    timeout = settings.HEALTH_CHECK_TIMEOUT
    checks: list[tuple[str, Callable[[], str]]] = [("database", check_database)]
    try:
        chains = chain_targets()
    except Exception:  # the database is down: its own check says so
        chains = {}
    checks.append(("broker", lambda: check_broker(timeout)))
    if not chains:  # nothing registered yet: the configured RPC_URL is what will be used
        from chain.rpc import parse_rpc_urls

        checks.append(
            ("chain", lambda: check_chain(None, parse_rpc_urls(settings.RPC_URL), timeout))
        )
    for chain_id, urls in sorted(chains.items()):
        checks.append(
            (f"chain:{chain_id}", lambda c=chain_id, u=urls: check_chain(c, u, timeout))  # type: ignore[misc]
        )
    checks.append(("ipfs", lambda: check_ipfs(timeout)))
    # The database check stays in this thread (Django's connections are per thread); the
    # others, network round trips, run side by side so /readyz takes the slowest, not the sum.
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = [(name, pool.submit(_timed, check)) for name, check in checks[1:]]
        results = [{"name": checks[0][0], **_timed(checks[0][1])}]
        results += [{"name": name, **future.result()} for name, future in futures]
    return results


def _timed(check: Callable[[], str]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check()
    except Exception as exc:  # every failure is reported, never raised: that is the endpoint's job
        error = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
        return {"ok": False, "ms": _ms(started), "error": error}
    return {"ok": True, "ms": _ms(started), "detail": detail}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def check_database() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def check_broker(timeout: float) -> str:
    """Redis answers PING, or RabbitMQ opens a connection and a channel (and so has taken
    the credentials and the vhost)."""
    reader = broker_contents.contents(timeout)
    try:
        return reader.describe()
    finally:
        reader.close()


def check_chain(chain_id: int | None, urls: list[str], timeout: float) -> str:
    try:
        served, head = rpc_batch(urls, [("eth_chainId", []), ("eth_blockNumber", [])], timeout)
    except ChainReadError as exc:
        raise CheckFailed(f"no RPC URL answered within {timeout} s: {exc}") from exc
    served = int(served, 16)
    if chain_id is not None and served != chain_id:
        shown = ", ".join(redact_url(u) for u in urls)
        raise CheckFailed(str(ChainMismatch(shown, served, chain_id)))
    return f"chain {served} at block {int(head, 16)}"


def check_ipfs(timeout: float) -> str:
    """Ask the configured pinning targets (the pin stage's own instances) once, briefly."""
    try:
        pinner = pinner_from_settings()
    except ImproperlyConfigured as exc:
        raise CheckFailed(str(exc)) from exc
    # one target: its backend's name; several: each target's check, passing while a quorum
    # passes (ipfs/backends/replicated.py)
    what = pinner.targets[0].pinner.backend if len(pinner.targets) == 1 else "IPFS targets"
    try:
        return pinner.check(timeout)
    except BackendUnavailable as exc:
        raise CheckFailed(f"{what}: {exc.last_error} ({exc.where})") from exc
    except (IpfsError, OSError) as exc:
        raise CheckFailed(f"{what}: {exc}") from exc
