"""``pinning-service``: an IPFS Pinning Service API (https://ipfs.github.io/pinning-services-api-spec/).

A service pins by CID and fetches the bytes from the IPFS network, so the bytes must be provided
first: this backend adds (and pins) them on the Kubo node at ``IPFS_KUBO_URL`` through a
:class:`~ipfs.backends.kubo.KuboPinner` (verified as that backend verifies), passes that node's
public addresses as the request's ``origins``, and asks the node to connect to the ``delegates``
the service names. The local gateway cannot be an origin: ``origins`` are libp2p peers, not HTTP
URLs. The node keeps its own pin, so a garbage collection before the service has fetched the
blocks cannot lose the only copy.

The API is not idempotent (every ``POST /pins`` is a new request), so before posting we look for
a request for the same CID (``GET /pins?cid=…&status=queued,pinning,pinned``) and follow that
one instead. A request still ``queued``/``pinning`` after ``IPFS_PIN_DEADLINE`` seconds is
replaced (a new request, then the old one deleted) up to ``IPFS_RETRIES`` times, then reported
with :class:`~ipfs.errors.PinTimeout` naming the CID, the service and the status.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from ipfs.backends.config import PinningConfig, setting_name
from ipfs.backends.http import RetryingHttp, json_body
from ipfs.backends.kubo import KuboPinner
from ipfs.backends.pinner import Pinner
from ipfs.cid import canonical_cid
from ipfs.errors import (
    BackendMisconfigured,
    BackendRejected,
    BackendUnavailable,
    PinningError,
    PinTimeout,
    RemotePinFailed,
)
from ipfs.profiles import CidProfile
from ipfs.tree import Tree

__all__ = ["PinStatus", "PinningServicePinner"]

logger = logging.getLogger(__name__)


_WAITING = ("queued", "pinning")


@dataclass(frozen=True)
class PinStatus:
    """A pinning service's ``PinStatus`` object, the fields we use."""

    requestid: str
    status: str
    cid: str
    name: str | None
    delegates: tuple[str, ...]
    info: dict[str, Any]

    @classmethod
    def parse(cls, obj: Any, service: str) -> PinStatus:
        try:
            pin = obj["pin"]
            return cls(
                requestid=str(obj["requestid"]),
                status=str(obj["status"]),
                cid=str(pin["cid"]),
                name=pin.get("name"),
                delegates=tuple(obj.get("delegates") or ()),
                info=dict(obj.get("info") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RemotePinFailed(f"{service} answered a malformed PinStatus {obj!r}") from exc


class PinningServicePinner(Pinner):
    """An IPFS Pinning Service API, with a Kubo node providing the bytes (see module docs)."""

    backend = "pinning-service"

    def __init__(
        self,
        url: str,
        token: str,
        *,
        provider: KuboPinner,
        deadline: float = 60.0,
        poll_interval: float = 2.0,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if not token:
            raise ValueError("a pinning service needs an access token")
        self.url = url.rstrip("/")
        self.provider = provider
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.retries = retries
        self._http = RetryingHttp(
            self.url,
            what="pinning service",
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    @classmethod
    def from_config(cls, config: PinningConfig) -> PinningServicePinner:
        if not config.pinning_service_token:
            raise BackendMisconfigured(
                "IPFS_BACKEND=pinning-service needs IPFS_PINNING_SERVICE_TOKEN "
                "(or IPFS_PINNING_SERVICE_TOKEN_FILE)",
                setting=setting_name("pinning_service_token"),
            )
        url = config.http_url("pinning_service_url")
        deadline = config.positive("pin_deadline")
        poll_interval = config.positive("pin_poll_interval")
        provider = KuboPinner.from_config(config)
        return cls(
            url,
            config.pinning_service_token,
            provider=provider,
            deadline=deadline,
            poll_interval=poll_interval,
            timeout=config.positive("timeout"),
            retries=int(config.at_least_zero("retries")),
            backoff=config.at_least_zero("retry_backoff"),
        )

    def __str__(self) -> str:
        return f"pinning service {self.url}"

    def close(self) -> None:
        self._http.close()
        self.provider.close()

    def _call(self, method: str, path: str, *, op: str, tries: int | None = None, **kw: Any) -> Any:
        response = self._http.request(method, path, op=op, tries=tries, **kw)
        if response.status_code >= 400:
            raise BackendRejected(
                f"{self}: {op} refused (HTTP {response.status_code}): {response.text[:300]}"
            )
        return json_body(response, str(self), op) if response.content else None

    def _status(self, obj: Any, cid: str) -> PinStatus:
        status = PinStatus.parse(obj, str(self))
        self._check(cid, status.cid)
        return status

    def _pin(self, data: bytes, cid: str, name: str, profile: CidProfile) -> str:
        # the bytes reach the network first (the CID verified under the same profile)
        self.provider.pin(data, name=name, profile=profile)
        return self.pin_cid(cid, name=name).cid

    def pin_tree(self, tree: Tree, *, name: str | None = None) -> str:
        """The folder reaches the network through the Kubo provider (every CID checked), then
        the service pins its root, fetching every block below it."""
        self.provider.pin_tree(tree, name=name)
        self._check(tree.root, self.pin_cid(tree.root, name=name or tree.root).cid)
        return tree.root

    def pin_cid(self, cid: str, *, name: str | None = None) -> PinStatus:
        """Have the service pin ``cid`` (already provided) and wait until it is pinned."""
        origins = self.provider.public_addresses()
        status = self._create(cid, name or cid, origins, exclude=frozenset())
        for replaced in range(self.retries + 1):
            status = self._wait(status, cid)
            if status.status == "pinned":
                return status
            if status.status == "failed":
                raise RemotePinFailed(
                    f"{self} reports that pinning {cid} failed (request {status.requestid}): "
                    f"{status.info or 'no details'}"
                )
            if replaced == self.retries:
                break
            logger.warning(
                "%s: %s still %s after %g s (request %s); replacing the request",
                self,
                cid,
                status.status,
                self.deadline,
                status.requestid,
            )
            old = status
            status = self._create(cid, name or cid, origins, exclude=frozenset({old.requestid}))
            self._delete(old.requestid)
        raise PinTimeout(
            f"{self} left the pin of {cid} {status.status} past its {self.deadline:g} s deadline "
            f"in each of {self.retries + 1} requests (last: {status.requestid}); the content is "
            f"provided by {self.provider}"
        )

    def _find(self, cid: str, exclude: frozenset[str]) -> PinStatus | None:
        """An existing request for ``cid``: pinned first, else the newest in progress."""
        answer = self._call(
            "GET",
            "pins",
            op="list pins",
            params={"cid": cid, "status": "queued,pinning,pinned", "limit": "1000"},
        )
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise RemotePinFailed(f"{self}: GET /pins answered {answer!r}")
        candidates = [self._status(obj, cid) for obj in results]
        candidates = [c for c in candidates if c.requestid not in exclude]
        for wanted in ("pinned", "pinning", "queued"):
            matching = [c for c in candidates if c.status == wanted]
            if matching:
                return matching[-1]
        return None

    def _create(
        self, cid: str, name: str, origins: list[str], *, exclude: frozenset[str]
    ) -> PinStatus:
        """POST a pin request unless one exists; a failed POST is checked for before retrying.

        A POST that timed out may still have created a request, and repeating it would make a
        second one; so each retry first looks again for a request for this CID.
        """
        last: BackendUnavailable | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._http.sleep_before(attempt)
            existing = self._find(cid, exclude)
            if existing is not None:
                logger.info("%s: %s already requested (%s)", self, cid, existing.requestid)
                return existing
            body: dict[str, Any] = {"cid": cid, "name": name[:255]}
            if origins:
                body["origins"] = origins
            try:
                answer = self._call("POST", "pins", op="add pin", tries=1, json=body)
            except BackendUnavailable as exc:
                last = exc
                continue
            status = self._status(answer, cid)
            self._connect_delegates(status)
            return status
        assert last is not None
        raise last

    def _connect_delegates(self, status: PinStatus) -> None:
        """The spec asks clients to connect to the service's delegates; it only speeds things up."""
        for delegate in status.delegates:
            try:
                self.provider.connect(delegate)
            except PinningError as exc:
                logger.warning("%s: could not connect to delegate %s: %s", self, delegate, exc)

    def _wait(self, status: PinStatus, cid: str) -> PinStatus:
        deadline = time.monotonic() + self.deadline
        while status.status in _WAITING and time.monotonic() < deadline:
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
            status = self._status(
                self._call("GET", f"pins/{status.requestid}", op="get pin status"), cid
            )
        if status.status not in (*_WAITING, "pinned", "failed"):
            raise RemotePinFailed(f"{self}: unknown status {status.status!r} for {cid}")
        return status

    def _delete(self, requestid: str) -> None:
        try:
            self._call("DELETE", f"pins/{requestid}", op="remove pin")
        except PinningError as exc:
            # The replacement request is what we follow; a stale one only costs the service.
            logger.warning("%s: could not delete stale request %s: %s", self, requestid, exc)

    def has(self, cid: str) -> bool:
        canonical_cid(cid)
        answer = self._call("GET", "pins", op="list pins", params={"cid": cid, "status": "pinned"})
        results = answer.get("results") if isinstance(answer, dict) else None
        return any(self._status(obj, cid).status == "pinned" for obj in results or [])

    def get(self, cid: str) -> bytes:
        """A pinning service has no read API; the bytes come from the providing Kubo node."""
        return self.provider.get(cid)

    def get_block(self, cid: str) -> bytes:
        return self.provider.get_block(cid)

    def check(self, timeout: float) -> str:
        provider = self.provider.check(timeout)
        self._call("GET", "pins", op="list pins", tries=1, timeout=timeout, params={"limit": "1"})
        return f"{provider}, pinning service {self.url}"
