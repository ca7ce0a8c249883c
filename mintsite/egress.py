"""Where webhooks may connect: public addresses on allowed ports, checked at connect time.

A subscription's URL is whatever an API-key holder set, so a delivery must not become a way
into the workers' network (the chain's RPC, Kubo's API, a cloud metadata service). Two checks:

- :func:`url_problem` when a subscription is saved (API and admin), for a clear 400: scheme,
  credentials, port, and the addresses the host resolves to now;
- :class:`GuardedBackend` when a delivery connects: an httpcore network backend that resolves
  the host itself, refuses the connection if any address is not allowed, and connects to the
  address it checked (so a name that resolves elsewhere by then — DNS rebinding — gains
  nothing). Its streams also hold a whole try to one deadline, however slowly the receiver
  answers (httpx's timeouts are per read).

Refused always: unspecified (0.0.0.0/8, ::), multicast, link-local (169.254.0.0/16 — the cloud
metadata address — and fe80::/10), reserved, and IPv4 addresses written as IPv6 (::ffff:a.b.c.d,
::a.b.c.d, and 6to4 / NAT64 / Teredo forms of a refused IPv4 address). Refused unless
``WEBHOOK_ALLOW_PRIVATE`` (a private deployment): loopback, private and other non-public ranges.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from django.conf import settings

from mintsite.errors import MintsiteError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
DEFAULT_PORTS = {"http": 80, "https": 443}
UNRESOLVED = "cannot resolve"  # how a connection error for a name with no address begins


class EgressRefused(MintsiteError, PermissionError):
    """A webhook destination the egress policy does not allow; the message says why."""


@dataclass(frozen=True)
class Policy:
    allow_private: bool
    ports: frozenset[int]

    @classmethod
    def from_settings(cls) -> Policy:
        return cls(
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE,
            ports=frozenset(settings.WEBHOOK_ALLOWED_PORTS),
        )

    def port_problem(self, port: int) -> str | None:
        if port in self.ports:
            return None
        allowed = ", ".join(str(p) for p in sorted(self.ports))
        return f"port {port} is not allowed (allowed: {allowed}; WEBHOOK_ALLOWED_PORTS)"

    def address_problem(self, address: IPAddress) -> str | None:
        """What kind of address it is, when the policy refuses it (else None)."""
        kind = _kind(address)
        if kind is None or (self.allow_private and kind in ("loopback", "private")):
            return None
        return kind


def _kind(address: IPAddress) -> str | None:
    """None for a public address, else the kind that makes it not one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "IPv4-mapped IPv6"
        if address in _IPV4_COMPATIBLE and not (address.is_unspecified or address.is_loopback):
            return "IPv4-compatible IPv6"
        embedded = (
            address.sixtofour
            or (address.teredo[1] if address.teredo else None)
            or (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        )
        if embedded is not None and _kind(embedded) is not None:
            return f"IPv6 form of a non-public IPv4 ({_kind(embedded)})"
    if address.is_unspecified or (address.version == 4 and address in _THIS_NETWORK):
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_link_local:
        return "link-local"
    if address.is_loopback:
        return "loopback"
    if address.is_reserved:
        return "reserved"
    if address.is_private or not address.is_global:
        return "private"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal address is itself); OSError if none, or if
    the name cannot be a DNS name (a label over 63 characters fails IDNA encoding)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise OSError(f"{host!r} is not a valid DNS name: {exc}") from exc
    # scope ids (fe80::1%eth0) are not part of the address
    return list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))


def check_addresses(host: str, addresses: Iterable[IPAddress], policy: Policy) -> None:
    """Raise EgressRefused if any address is refused (one bad answer refuses the name)."""
    for address in addresses:
        kind = policy.address_problem(address)
        if kind is None:
            continue
        if host.strip("[]") == str(address):
            raise EgressRefused(f"{address} is a {kind} address; webhooks go to public ones")
        raise EgressRefused(f"{host} resolves to a {kind} address; webhooks go to public ones")


def dns_name_problem(host: str) -> str | None:
    """Why ``host`` can never be looked up (None if it can): each dot-separated label is 1 to 63
    characters once IDNA-encoded, the whole name at most 253."""
    if host.startswith("["):
        return None  # an IPv6 literal
    try:
        encoded = host.rstrip(".").encode("idna")
    except UnicodeError:
        return "is not a valid DNS name: each label must be 1 to 63 characters"
    if len(encoded) > 253:
        return "is not a valid DNS name: it is longer than 253 characters"
    return None


def url_problem(url: str, policy: Policy, *, resolve_host: bool = True) -> str | None:
    """Why a webhook may not be sent to ``url`` (None if it may). A name that does not resolve
    now is accepted: each delivery resolves it again and checks what it connects to."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"the URL cannot be delivered to: {exc}"
    if parsed.scheme not in DEFAULT_PORTS:
        return "the URL must be an http:// or https:// URL"
    if parsed.userinfo:
        return "the URL must not carry credentials (user:password@); receivers check the signature"
    if not parsed.host:
        return "the URL has no host"
    if dns_name_problem(parsed.host):
        return f"the URL's host {dns_name_problem(parsed.host)}"
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    problem = policy.port_problem(port)
    if problem:
        return problem
    try:
        literal: IPAddress | None = ipaddress.ip_address(parsed.host)
    except ValueError:
        literal = None
    try:
        if literal is not None:
            check_addresses(parsed.host, [literal], policy)
        elif resolve_host:
            try:
                addresses = resolve(parsed.host, port)
            except OSError:
                return None
            check_addresses(parsed.host, addresses, policy)
    except EgressRefused as exc:
        return str(exc)
    return None


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the try's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def _left(self, timeout: float | None, expired: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise expired("the delivery's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = self._left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(
            self._stream.start_tls(ssl_context, server_hostname, left), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, connecting only to addresses the policy allows, and only
    until ``deadline`` (a ``time.monotonic()`` value)."""

    def __init__(self, policy: Policy, deadline: float) -> None:
        self._policy = policy
        self._deadline = deadline
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        problem = self._policy.port_problem(port)
        if problem:
            raise EgressRefused(problem)
        try:
            addresses = resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"{UNRESOLVED} {host}: {exc}") from exc
        check_addresses(host, addresses, self._policy)
        failure: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in addresses:  # the checked addresses, never the name again
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise httpcore.ConnectTimeout("the delivery's deadline passed")
            try:
                stream = self._sockets.connect_tcp(
                    str(address),
                    port,
                    timeout=left if timeout is None else min(timeout, left),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return DeadlineStream(stream, self._deadline)
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise EgressRefused("webhooks do not connect to unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport over a :class:`GuardedBackend`. httpx does not take a network
    backend yet (encode/httpx discussion #3180), so the connection pool it builds is replaced
    by one that uses ours; everything else (request and response mapping, errors) is httpx's.
    Certificates are verified against the URL's name (httpcore's SNI), not the address."""

    def __init__(
        self, policy: Policy, deadline: float, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=1,
            network_backend=GuardedBackend(policy, deadline),
        )


def client(
    total_seconds: float,
    policy: Policy | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.Client:
    """An httpx client for one delivery: no proxies or .netrc from the environment, no
    redirects, and every connection guarded and ended ``total_seconds`` from now. The
    certificates it trusts are certifi's unless ``ssl_context`` says otherwise."""
    policy = policy or Policy.from_settings()
    deadline = time.monotonic() + total_seconds
    return httpx.Client(
        transport=GuardedTransport(policy, deadline, ssl_context),
        timeout=total_seconds,
        follow_redirects=False,
        trust_env=False,
    )
