"""Connecting to the chain, over one RPC URL or several with failover.

A public RPC endpoint drops connections, answers 5xx/429 or HTML error pages every so often; the
listener must not lose a range (or crash) when that happens. ``FailoverHTTPProvider`` sends each
request to the current URL and, on a *transport* failure, moves on to the next one, backing off
after every full round. JSON-RPC errors inside a valid response (a revert, "block range too
large") are answers, not failures: they come back to web3 unchanged so callers can react.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from django.conf import settings
from web3 import Web3
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse

from chain.errors import ChainMismatch, RpcUnavailable

logger = logging.getLogger(__name__)


def parse_rpc_urls(rpc_urls: str | Sequence[str] | None) -> list[str]:
    """One URL, a comma-separated string or a list of them; None means ``settings.RPC_URL``."""
    if rpc_urls is None:
        rpc_urls = settings.RPC_URL
    parts = [rpc_urls] if isinstance(rpc_urls, str) else list(rpc_urls)
    urls = [url.strip() for part in parts for url in part.split(",") if url.strip()]
    if not urls:
        raise ValueError(f"no RPC URL given in {rpc_urls!r}")
    return urls


class _TransportError(Exception):
    """This URL did not give a usable answer (as opposed to a JSON-RPC error, which is one)."""


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` of an RPC URL: what an error, a log line or ``/readyz`` may show.
    Providers put the API key in the path (``/v3/<key>``), the query or the credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a malformed port: leave it out
        port = ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else "<rpc url>"


def scrub(text: str, urls: Iterable[str]) -> str:
    """``text`` with each of ``urls`` shown as :func:`redact_url` shows it, and their secret
    parts (path, query, credentials) removed wherever else they appear: a transport error's own
    message often quotes the path (``Max retries exceeded with url: /v3/<key>``)."""
    for url in sorted(urls, key=len, reverse=True):
        text = text.replace(url, redact_url(url))
        parts = urlsplit(url)
        for secret in (parts.path, parts.query, parts.username, parts.password):
            if secret and len(secret) > 1:
                text = text.replace(secret, "…")
    return text


def _in_request_order(responses: list[Any]) -> list[RPCResponse]:
    """A batch's answers in the order of its requests: a node may answer in any order (JSON-RPC
    2.0), and the request ids web3 gives a batch rise with each request. Answers without an
    integer id (an error about the batch itself) are left as they came."""
    if all(isinstance(r, dict) and isinstance(r.get("id"), int) for r in responses):
        return cast(list[RPCResponse], sorted(responses, key=lambda r: r["id"]))
    return cast(list[RPCResponse], responses)


class FailoverHTTPProvider(HTTPProvider):
    """An ``HTTPProvider`` over several URLs that fails over and backs off on transport failures.

    A transport failure is: no connection, a reset or dropped socket, a timeout, HTTP 5xx or 429,
    or a body that is not JSON. After one, the request goes to the next URL, and that URL stays
    the current one for later requests (sticky, so a flapping primary is not hammered). When
    every URL has failed the same request, the provider sleeps ``backoff * 2**round`` (capped at
    ``max_backoff``) and starts another round; after ``retries`` extra rounds it raises
    ``RpcUnavailable`` naming each URL and its last error. web3's own per-URL retry is switched
    off: this class does the retrying. web3's request cache (``cache_allowed_requests``, off by
    default) is not used here: every request goes to a node.

    Single requests and JSON-RPC batches (web3 calls ``make_batch_request`` on the provider
    for ``w3.batch_requests()``) take the same path; a batch is one HTTP request and is resent
    whole.

    Threads: meant for one provider per thread or process, like web3's own. Sharing one is safe
    (a lock guards the counters and the current URL; web3 keeps one HTTP session per thread),
    but concurrent failures can advance the current URL twice. Repeating a request is only safe
    for reads and signed raw transactions (a resend is "already known"/"nonce too low"); a
    timed-out ``eth_sendTransaction`` or ``anvil_mine`` may run twice.
    """

    def __init__(
        self,
        endpoint_uris: Sequence[str],
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        if not endpoint_uris:
            raise ValueError("FailoverHTTPProvider needs at least one URL")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        super().__init__(
            endpoint_uris[0],
            request_kwargs={"timeout": timeout},
            exception_retry_configuration=None,
        )
        self.endpoint_uris: tuple[str, ...] = tuple(endpoint_uris)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.request_count = 0  # HTTP requests attempted; a batch counts once
        self.failure_count = 0  # attempts that hit a transport failure
        self.failover_count = 0  # times the current URL moved to a different one
        self._current = 0
        self._lock = threading.Lock()

    def __str__(self) -> str:
        shown = ", ".join(redact_url(u) for u in self.endpoint_uris)
        return f"RPC connection {shown} (current {redact_url(str(self.endpoint_uri))})"

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        response = self._post_with_failover(self.encode_rpc_request(method, params), method)
        return cast(RPCResponse, response)

    def make_batch_request(
        self, batch_requests: list[tuple[RPCEndpoint, Any]]
    ) -> list[RPCResponse] | RPCResponse:
        response = self._post_with_failover(self.encode_batch_rpc_request(batch_requests), "batch")
        if not isinstance(response, list):
            return cast(RPCResponse, response)  # one error object for the whole batch
        return _in_request_order(response)

    def _post_with_failover(self, request_data: bytes, what: str) -> Any:
        """POST to the current URL, then the others in turn, for up to ``1 + retries`` rounds."""
        n = len(self.endpoint_uris)
        last_errors: dict[str, str] = {}
        for round_no in range(self.retries + 1):
            if round_no:
                delay = min(self.backoff * 2 ** (round_no - 1), self.max_backoff)
                logger.warning(
                    "every RPC URL failed %s; retrying in %.2fs (round %d of %d)",
                    what,
                    delay,
                    round_no + 1,
                    self.retries + 1,
                )
                time.sleep(delay)
            start = self._current
            for offset in range(n):
                index = (start + offset) % n
                url = self.endpoint_uris[index]
                with self._lock:
                    self.request_count += 1
                try:
                    response = self._post_once(url, request_data)
                except _TransportError as exc:
                    last_errors[redact_url(url)] = scrub(str(exc), self.endpoint_uris)
                    self._on_failure(index, url, exc, what)
                    continue
                if index != self._current:
                    with self._lock:
                        self._current = index
                        self.endpoint_uri = url
                return response
        detail = "; ".join(f"{url}: {error}" for url, error in last_errors.items())
        raise RpcUnavailable(
            f"no RPC URL answered {what} after {self.retries + 1} round(s): {detail}"
        )

    def _on_failure(self, index: int, url: str, exc: _TransportError, what: str) -> None:
        n = len(self.endpoint_uris)
        with self._lock:
            self.failure_count += 1
            if n > 1 and self._current == index:
                self._current = (index + 1) % n
                self.endpoint_uri = self.endpoint_uris[self._current]
                self.failover_count += 1
        then = f"next {redact_url(self.endpoint_uris[(index + 1) % n])}" if n > 1 else "only URL"
        logger.warning(
            "RPC %s failed %s: %s; %s",
            redact_url(url),
            what,
            scrub(str(exc), self.endpoint_uris),
            then,
        )

    def _post_once(self, url: str, request_data: bytes) -> Any:
        """One HTTP POST; the decoded JSON body, or ``_TransportError``."""
        try:
            with self._request_session_manager.get_response_from_post_request(
                url, data=request_data, **self.get_request_kwargs()
            ) as response:
                status = response.status_code
                body = response.content
        except (requests.RequestException, OSError) as exc:
            raise _TransportError(f"{type(exc).__name__}: {exc}") from exc
        if status >= 500 or status == 429:
            raise _TransportError(f"HTTP {status}: {body[:200]!r}")
        try:
            decoded = json.loads(body)
        except ValueError as exc:
            raise _TransportError(f"HTTP {status} with a non-JSON body: {body[:200]!r}") from exc
        if not isinstance(decoded, dict | list):
            raise _TransportError(f"HTTP {status} with a non-JSON-RPC body: {body[:200]!r}")
        return decoded


def connect(
    rpc_urls: str | Sequence[str] | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 0.2,
    max_backoff: float = 5.0,
    chain_id: int | None = None,
) -> Web3:
    """A ``Web3`` over ``FailoverHTTPProvider``: one URL, a list, or a comma-separated string.

    ``None`` means ``settings.RPC_URL`` (which may itself list several URLs, comma-separated).
    ``timeout`` is per HTTP request; ``retries`` is the number of extra rounds over all URLs.
    With ``chain_id``, the endpoints must serve that chain (``ChainMismatch`` otherwise): the
    one check every caller that knows its chain goes through.
    """
    urls = parse_rpc_urls(rpc_urls)
    w3 = Web3(
        FailoverHTTPProvider(
            urls, timeout=timeout, retries=retries, backoff=backoff, max_backoff=max_backoff
        )
    )
    if chain_id is not None:
        check_chain_id(w3, chain_id)
    return w3


def check_chain_id(w3: Web3, expected: int) -> None:
    """Raise ``ChainMismatch`` unless ``w3``'s endpoints serve chain ``expected``."""
    served = int(w3.eth.chain_id)
    if served != expected:
        provider = w3.provider
        urls = getattr(provider, "endpoint_uris", None) or [getattr(provider, "endpoint_uri", "?")]
        raise ChainMismatch(", ".join(redact_url(str(u)) for u in urls), served, expected)


def rpc_stats(w3: Web3) -> dict[str, int]:
    """The provider's counters: HTTP requests attempted, transport failures, failovers."""
    provider = w3.provider
    if not isinstance(provider, FailoverHTTPProvider):
        return {}
    return {
        "requests": provider.request_count,
        "failures": provider.failure_count,
        "failovers": provider.failover_count,
    }
