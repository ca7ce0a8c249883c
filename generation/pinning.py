"""Pinning content to IPFS: one interface, three backends, every CID checked against our own.

``pinner_from_settings().pin(data)`` stores ``data`` with the configured backend
(``IPFS_BACKEND``) and returns its CID, which is always the CID computed here from the same
bytes (:func:`generation.ipfs.compute_cid`: CIDv1, raw leaves, sha2-256, Kubo's default chunker
and layout). A backend that answers with any other CID raises :class:`CidMismatch`, so the pin
stage fails and nothing is published under a CID that does not name our bytes.

Backends:

- ``local`` (:class:`LocalPinner`, the embedded default): the content-addressed store on disk
  (:class:`generation.ipfs.LocalStore`), served by the gateway view at ``/ipfs/<cid>``. After
  writing, the file is read back and its CID recomputed.
- ``kubo`` (:class:`KuboPinner`): a Kubo node's RPC API over HTTP. ``add`` with
  ``cid-version=1&raw-leaves=true&chunker=size-262144&hash=sha2-256`` (explicit, so a node
  whose ``Import.*`` config differs from the defaults still builds our DAG) and ``pin=false``;
  only once the node's CID matches ours does ``pin/add`` pin it, so nothing is ever pinned
  under a CID we have not verified; ``block/stat`` then reads the root back.
- ``pinning-service`` (:class:`PinningServicePinner`): an IPFS Pinning Service API
  (https://ipfs.github.io/pinning-services-api-spec/). A service pins by CID and fetches the
  bytes from the IPFS network, so the bytes must be provided first: this backend adds (and
  pins) them on the Kubo node at ``IPFS_KUBO_URL`` through a :class:`KuboPinner` (verified as
  above), passes that node's public addresses as the request's ``origins``, and asks the node
  to connect to the ``delegates`` the service names. The local gateway cannot be an origin:
  ``origins`` are libp2p peers, not HTTP URLs. The node keeps its own pin, so a garbage
  collection before the service has fetched the blocks cannot lose the only copy.
  The API is not idempotent (every ``POST /pins`` is a new request), so before posting we look
  for a request for the same CID (``GET /pins?cid=…&status=queued,pinning,pinned``) and follow
  that one instead. A request still ``queued``/``pinning`` after ``IPFS_PIN_DEADLINE`` seconds
  is replaced (a new request, then the old one deleted) up to ``IPFS_RETRIES`` times, then
  reported with :class:`PinTimeout` naming the CID, the service and the status.

Transport failures (no connection, timeouts, HTTP 429 and 5xx without an error body) are
retried ``IPFS_RETRIES`` times with exponential backoff, then raised as
:class:`BackendUnavailable`. Every error is a :class:`PinningError` (an ``IpfsError``) whose
``retryable`` says whether trying the stage again later can help.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from generation.ipfs import (
    ContentCorrupted,
    InvalidCID,
    IpfsError,
    LocalStore,
    canonical_cid,
    compute_cid,
)

__all__ = [
    "BACKENDS",
    "BackendRejected",
    "BackendUnavailable",
    "CidMismatch",
    "KuboPinner",
    "LocalPinner",
    "PinStatus",
    "PinTimeout",
    "Pinner",
    "PinningError",
    "PinningServicePinner",
    "RemotePinFailed",
    "pinner_from_settings",
]

logger = logging.getLogger(__name__)

BACKENDS = ("local", "kubo", "pinning-service")

#: The ``ipfs add`` options that make Kubo build the DAG :func:`compute_cid` computes.
KUBO_ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": "size-262144",
    "hash": "sha2-256",
    "trickle": "false",
}


# --- errors --------------------------------------------------------------------------------------


class PinningError(IpfsError):
    """A backend could not pin, find or return content."""

    #: Whether trying again later can help (a node down, a slow service), or not (a wrong CID,
    #: a refused token: someone has to change something first).
    retryable: ClassVar[bool] = True


class CidMismatch(PinningError, ValueError):
    """A backend named our bytes with a CID other than the one we computed for them."""

    retryable = False

    def __init__(self, *, expected: str, got: str, backend: str) -> None:
        self.expected, self.got, self.backend = expected, got, backend
        super().__init__(
            f"{backend} answered CID {got} for content whose CID is {expected} (CIDv1, raw "
            "leaves, sha2-256, chunker size-262144); nothing is pinned or published under "
            f"{got}. Check the node's import settings and software version."
        )


class BackendUnavailable(PinningError, ConnectionError):
    """No usable answer from a backend after every retry (refused, timed out, 5xx, 429)."""


class BackendRejected(PinningError):
    """A backend refused the request (4xx: a bad token, a bad argument); retrying won't help."""

    retryable = False


class RemotePinFailed(PinningError):
    """The backend answered, and its answer is that it did not pin the content."""


class PinTimeout(PinningError, TimeoutError):
    """A pinning service left a pin queued or pinning past its deadline, every time we asked."""


# --- the interface -------------------------------------------------------------------------------


class Pinner(ABC):
    """Where pinned content lives. ``pin`` returns the verified CID; ``has``/``get`` read back."""

    #: The ``IPFS_BACKEND`` value that selects this class.
    backend: ClassVar[str]

    def pin(self, data: bytes, *, name: str | None = None) -> str:
        """Pin ``data`` and return its CID, verified against the CID computed from ``data``.

        ``name`` labels the pin where the backend keeps labels (pinning services); it defaults
        to the CID. Raises :class:`CidMismatch` when the backend names the bytes differently.
        """
        expected = compute_cid(data)
        returned = self._pin(data, expected, name or expected)
        self._check(expected, returned)
        logger.info("pinned %s (%d bytes) with %s", expected, len(data), self)
        return expected

    @abstractmethod
    def _pin(self, data: bytes, cid: str, name: str) -> str:
        """Store ``data`` (whose CID is ``cid``) and return the CID the backend reports."""

    @abstractmethod
    def has(self, cid: str) -> bool:
        """Whether this backend holds (pins) ``cid``."""

    @abstractmethod
    def get(self, cid: str) -> bytes:
        """The bytes of ``cid``, checked to give that CID (else :class:`ContentCorrupted`)."""

    def close(self) -> None:  # noqa: B027  (optional hook: only HTTP backends hold connections)
        """Release connections; the pinner must not be used afterwards."""

    def _check(self, expected: str, got: str | None) -> None:
        """Raise :class:`CidMismatch` unless ``got`` is ``expected`` (in any multibase)."""
        try:
            same = got is not None and canonical_cid(got) == canonical_cid(expected)
        except InvalidCID:
            same = False
        if not same:
            raise CidMismatch(expected=expected, got=str(got), backend=str(self))

    @staticmethod
    def _verified(cid: str, data: bytes, source: str) -> bytes:
        actual = compute_cid(data)
        if actual != canonical_cid(cid):
            raise ContentCorrupted(f"{source} returned bytes whose CID is {actual}, not {cid}")
        return data


class LocalPinner(Pinner):
    """The embedded backend: the on-disk :class:`LocalStore` that the gateway view serves."""

    backend = "local"

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    def __str__(self) -> str:
        return f"local store {self.store.root}"

    def _pin(self, data: bytes, cid: str, name: str) -> str:
        stored = self.store.add(data)
        self.store.get(stored)  # read back: recomputes the CID of the bytes now on disk
        return stored

    def has(self, cid: str) -> bool:
        return self.store.has(cid)

    def get(self, cid: str) -> bytes:
        return self.store.get(cid)


# --- HTTP with retries ---------------------------------------------------------------------------


class _Http:
    """One base URL, one connection pool; transport failures retried with exponential backoff."""

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
        self, method: str, path: str, *, op: str, tries: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send the request, retrying transport failures; any other answer is returned."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        tries = self.retries + 1 if tries is None else tries
        last = "no attempt made"
        for attempt in range(tries):
            if attempt:
                self.sleep_before(attempt)
            try:
                response = self._client.request(method, url, **kwargs)
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
        raise BackendUnavailable(
            f"{self.what} at {self.base_url}: {op} got no usable answer in {tries} "
            f"{'try' if tries == 1 else 'tries'} ({self.timeout:g} s timeout each); "
            f"last error: {last}"
        )


def _json(response: httpx.Response, what: str, op: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise RemotePinFailed(
            f"{what}: {op} answered HTTP {response.status_code} with a body that is not JSON: "
            f"{response.text[:200]!r}"
        ) from None


# --- Kubo ----------------------------------------------------------------------------------------


def _kubo_error(response: httpx.Response) -> bool:
    """Kubo reports a command's failure as HTTP 500 with a JSON ``{"Type": "error"}`` body."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("Type") == "error"


class KuboPinner(Pinner):
    """A Kubo node through its RPC API (``/api/v0``; every call is a POST)."""

    backend = "kubo"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = _Http(
            f"{self.url}/api/v0",
            what="Kubo RPC",
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            is_answer=_kubo_error,
        )

    def __str__(self) -> str:
        return f"Kubo RPC at {self.url}"

    def close(self) -> None:
        self._http.close()

    def _call(self, command: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request("POST", command, op=command, **kwargs)
        if response.status_code >= 400:
            message = response.text[:300]
            if _kubo_error(response):
                message = str(response.json().get("Message", message))
            error = RemotePinFailed if response.status_code >= 500 else BackendRejected
            raise error(f"{self}: {command} failed (HTTP {response.status_code}): {message}")
        return response

    def add(self, data: bytes, *, pin: bool = False) -> str:
        """``ipfs add`` with our CID parameters; returns the CID the node reports (unchecked)."""
        response = self._call(
            "add",
            params={**KUBO_ADD_PARAMS, "pin": str(pin).lower()},
            # One file, not wrapped in a directory: its name is not part of the CID.
            files={"file": ("blob", data, "application/octet-stream")},
        )
        # The answer is newline-delimited JSON; the file's own entry is the last with a Hash.
        cid = None
        try:
            for line in response.text.splitlines():
                entry = json.loads(line) if line.strip() else None
                if isinstance(entry, dict) and "Hash" in entry:
                    cid = entry["Hash"]
        except ValueError:
            cid = None
        if cid is None:
            raise RemotePinFailed(f"{self}: add answered without a CID: {response.text[:200]!r}")
        return str(cid)

    def _pin(self, data: bytes, cid: str, name: str) -> str:
        added = self.add(data, pin=False)
        self._check(cid, added)  # before pin/add: a CID we have not verified is never pinned
        pins = _json(
            self._call("pin/add", params={"arg": cid, "recursive": "true"}), str(self), "pin/add"
        )
        pinned = pins.get("Pins", []) if isinstance(pins, dict) else []
        if not any(self._same(cid, p) for p in pinned):
            raise RemotePinFailed(f"{self}: pin/add of {cid} answered {pins!r}")
        stat = _json(self._call("block/stat", params={"arg": cid}), str(self), "block/stat")
        return str(stat.get("Key")) if isinstance(stat, dict) else str(stat)

    @staticmethod
    def _same(cid: str, other: Any) -> bool:
        try:
            return canonical_cid(str(other)) == canonical_cid(cid)
        except InvalidCID:
            return False

    def has(self, cid: str) -> bool:
        canonical_cid(cid)  # InvalidCID before any request
        response = self._http.request(
            "POST", "pin/ls", op="pin/ls", params={"arg": cid, "type": "recursive"}
        )
        if _kubo_error(response) and "not pinned" in str(response.json().get("Message")):
            return False
        if response.status_code >= 400:
            raise RemotePinFailed(f"{self}: pin/ls {cid} failed: {response.text[:300]}")
        keys = _json(response, str(self), "pin/ls").get("Keys") or {}
        return any(self._same(cid, key) for key in keys)

    def get(self, cid: str) -> bytes:
        canonical_cid(cid)
        return self._verified(cid, self._call("cat", params={"arg": cid}).content, str(self))

    def public_addresses(self) -> list[str]:
        """The node's multiaddrs that a remote peer could dial (loopback and private left out)."""
        answer = _json(self._call("id"), str(self), "id")
        return [a for a in answer.get("Addresses") or [] if _is_public_multiaddr(a)]

    def connect(self, multiaddr: str) -> None:
        """Ask the node to connect to a peer (a pinning service's delegate)."""
        self._call("swarm/connect", params={"arg": multiaddr})


def _is_public_multiaddr(multiaddr: str) -> bool:
    parts = multiaddr.strip("/").split("/")
    if len(parts) < 2:
        return False
    protocol, host = parts[0], parts[1]
    if protocol in ("dns", "dns4", "dns6", "dnsaddr"):
        return host not in ("localhost",) and not host.endswith(".local")
    if protocol in ("ip4", "ip6"):
        try:
            return ipaddress.ip_address(host).is_global
        except ValueError:
            return False
    return False


# --- IPFS Pinning Service API --------------------------------------------------------------------

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
        self._http = _Http(
            self.url,
            what="pinning service",
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
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
        return _json(response, str(self), op) if response.content else None

    def _status(self, obj: Any, cid: str) -> PinStatus:
        status = PinStatus.parse(obj, str(self))
        self._check(cid, status.cid)
        return status

    def _pin(self, data: bytes, cid: str, name: str) -> str:
        self.provider.pin(data, name=name)  # the bytes reach the network first (verified CID)
        return self.pin_cid(cid, name=name).cid

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


# --- configuration -------------------------------------------------------------------------------

_pinners: dict[tuple[Any, ...], Pinner] = {}
_pinners_lock = threading.Lock()


def _positive(name: str) -> float:
    value = float(getattr(settings, name))
    if value <= 0:
        raise ImproperlyConfigured(f"{name}={value:g} must be positive")
    return value


def _url(name: str) -> str:
    value = str(getattr(settings, name) or "")
    if not value.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{name}={value!r} must be an http:// or https:// URL")
    return value


def pinner_from_settings() -> Pinner:
    """The pinner that ``IPFS_BACKEND`` and the other ``IPFS_*`` settings describe.

    One instance (and connection pool) per distinct configuration, shared by threads.
    Raises ``ImproperlyConfigured`` naming the setting that is missing or wrong.
    """
    backend = settings.IPFS_BACKEND
    if backend not in BACKENDS:
        raise ImproperlyConfigured(f"IPFS_BACKEND={backend!r} is not one of {', '.join(BACKENDS)}")
    key: tuple[Any, ...] = (backend, str(settings.IPFS_STORE_DIR))
    if backend != "local":
        key += (
            settings.IPFS_KUBO_URL,
            settings.IPFS_TIMEOUT,
            settings.IPFS_RETRIES,
            settings.IPFS_RETRY_BACKOFF,
        )
    if backend == "pinning-service":
        key += (
            settings.IPFS_PINNING_SERVICE_URL,
            settings.IPFS_PINNING_SERVICE_TOKEN,
            settings.IPFS_PIN_DEADLINE,
            settings.IPFS_PIN_POLL_INTERVAL,
        )
    with _pinners_lock:
        if key not in _pinners:
            _pinners[key] = _build(backend)
        return _pinners[key]


def _build(backend: str) -> Pinner:
    if backend == "local":
        return LocalPinner(LocalStore(Path(settings.IPFS_STORE_DIR)))
    retries = int(settings.IPFS_RETRIES)
    if retries < 0:
        raise ImproperlyConfigured(f"IPFS_RETRIES={retries} must be at least 0")
    backoff = float(settings.IPFS_RETRY_BACKOFF)
    if backoff < 0:
        raise ImproperlyConfigured(f"IPFS_RETRY_BACKOFF={backoff:g} must be at least 0")
    timeout = _positive("IPFS_TIMEOUT")
    kubo = KuboPinner(_url("IPFS_KUBO_URL"), timeout=timeout, retries=retries, backoff=backoff)
    if backend == "kubo":
        return kubo
    if not settings.IPFS_PINNING_SERVICE_TOKEN:
        raise ImproperlyConfigured(
            "IPFS_BACKEND=pinning-service needs IPFS_PINNING_SERVICE_TOKEN "
            "(or IPFS_PINNING_SERVICE_TOKEN_FILE)"
        )
    return PinningServicePinner(
        _url("IPFS_PINNING_SERVICE_URL"),
        settings.IPFS_PINNING_SERVICE_TOKEN,
        provider=kubo,
        deadline=_positive("IPFS_PIN_DEADLINE"),
        poll_interval=_positive("IPFS_PIN_POLL_INTERVAL"),
        timeout=timeout,
        retries=retries,
        backoff=backoff,
    )
