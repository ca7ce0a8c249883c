"""HTTP for the remote backends: one base URL, one connection pool, transport failures retried
with exponential backoff, every other answer handed back for the backend to read."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from ipfs.errors import BackendUnavailable, RemotePinFailed

__all__ = ["RetryingHttp", "json_body"]

logger = logging.getLogger(__name__)


class RetryingHttp:
    """Requests to one base URL; refused, timed-out, 429 and 5xx answers are tried again.

    ``is_answer`` says which 5xx responses are answers rather than failures (Kubo reports a
    command's own failure as HTTP 500 with a JSON error body; retrying that changes nothing).
    """

    def __init__(
        self,
        base_url: str,
        *,
        what: str,
        timeout: float,
        retries: int,
        backoff: float,
        max_backoff: float = 30.0,
        headers: dict[str, str] | None = None,
        is_answer: Callable[[httpx.Response], bool] = lambda response: False,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.what = what
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._is_answer = is_answer
        self._client = httpx.Client(timeout=timeout, headers=headers or {})

    def close(self) -> None:
        self._client.close()

    def sleep_before(self, attempt: int) -> None:
        """Back off before retry number ``attempt`` (1-based)."""
        time.sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))

    def request(
        self,
        method: str,
        path: str,
        *,
        op: str,
        tries: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send the request, retrying transport failures; any other answer is returned.

        ``tries`` and ``timeout`` override the configured ones for this request (a health
        check asks once, briefly, whatever the pin stage's patience).
        """
        url = f"{self.base_url}/{path.lstrip('/')}"
        tries = self.retries + 1 if tries is None else tries
        timeout = self.timeout if timeout is None else timeout
        last = "no attempt made"
        for attempt in range(tries):
            if attempt:
                self.sleep_before(attempt)
            try:
                response = self._client.request(method, url, timeout=timeout, **kwargs)
            except httpx.TransportError as exc:  # refused, reset, timed out, protocol garbage
                last = f"{type(exc).__name__}: {exc or 'no detail'}"
            else:
                status = response.status_code
                if status != 429 and (status < 500 or self._is_answer(response)):
                    return response
                last = f"HTTP {status}: {response.text[:200]!r}"
            logger.warning(
                "%s at %s: %s failed (try %d of %d): %s",
                self.what,
                self.base_url,
                op,
                attempt + 1,
                tries,
                last,
            )
        where = f"{self.what} at {self.base_url}"
        raise BackendUnavailable(
            f"{where}: {op} got no usable answer in {tries} "
            f"{'try' if tries == 1 else 'tries'} ({timeout:g} s timeout each); "
            f"last error: {last}",
            where=where,
            last_error=last,
        )


def json_body(response: httpx.Response, what: str, op: str) -> Any:
    """The response's JSON, or :class:`RemotePinFailed` saying what came instead."""
    try:
        return response.json()
    except ValueError:
        raise RemotePinFailed(
            f"{what}: {op} answered HTTP {response.status_code} with a body that is not JSON: "
            f"{response.text[:200]!r}"
        ) from None
