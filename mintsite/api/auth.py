"""API keys (``Authorization: Bearer mint_...``), the permission writes need, and throttles."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle

from mintsite.cache import SharedRedisCache
from mintsite.models import ApiKey

logger = logging.getLogger(__name__)


class KeyHolder:
    """``request.user`` for a request made with an API key (not a Django user)."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, key: ApiKey) -> None:
        self.key = key

    def __str__(self) -> str:
        return f"API key {self.key.prefix} of {self.key.collection.slug}"


class ApiKeyAuthentication(BaseAuthentication):
    """The key in ``Authorization: Bearer``; none is an anonymous request. Refused keys count
    against the client's address (``FailedKeyLimit``), so keys cannot be guessed at speed."""

    def authenticate(self, request: Request) -> tuple[KeyHolder, ApiKey] | None:
        raw = get_authorization_header(request)
        if not raw:
            return None
        limit = FailedKeyLimit(request)
        limit.check()
        try:
            return self._check_key(raw)
        except exceptions.AuthenticationFailed:
            limit.count_failure()
            raise

    def _check_key(self, raw: bytes) -> tuple[KeyHolder, ApiKey]:
        header = raw.decode("latin-1")
        scheme, _, key = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise exceptions.AuthenticationFailed(
                f"unsupported authorization scheme {scheme!r}: send "
                "'Authorization: Bearer <API key>'",
                code="invalid_authorization",
            )
        key = key.strip()
        prefix = ApiKey.parse_prefix(key)
        if prefix is None:
            raise exceptions.AuthenticationFailed(
                "malformed API key: expected mint_<prefix>_<secret>, as printed by "
                "manage.py create_api_key",
                code="invalid_api_key",
            )
        row = ApiKey.objects.select_related("collection").filter(prefix=prefix).first()
        if row is None or not row.matches(key):
            raise exceptions.AuthenticationFailed(
                f"unknown API key mint_{prefix}_…", code="invalid_api_key"
            )
        if row.revoked:
            raise exceptions.AuthenticationFailed(
                f"API key mint_{prefix}_… ({row.name}) was revoked", code="api_key_revoked"
            )
        row.touch()
        return KeyHolder(row), row

    def authenticate_header(self, request: Request) -> str:
        # A 401 needs a WWW-Authenticate challenge (else DRF answers 403).
        return 'Bearer realm="api"'


class FailedKeyLimit(SimpleRateThrottle):
    """Refused credentials (a malformed, unknown or revoked key, another scheme) per client
    address, at most ``API_AUTH_FAILURE_RATE`` in a fixed window counted in Redis.

    Authentication runs before DRF's throttles, and a refused key never reaches them, so
    without this a client could try keys as fast as the server answers. Once an address has
    used up its refusals, every request from it that carries credentials is answered 429 with
    ``Retry-After`` until the window ends, and its key is not looked at: a valid key is refused
    too (else a 429 or a 200 would tell a guess from a hit). A request without credentials is
    not affected (public reads have their own limit), and a valid key does not reset the count
    (else one's own key would buy fresh guesses at another collection's). The address is the
    anonymous throttle's: the socket's, or ``X-Forwarded-For`` behind ``API_NUM_PROXIES``.
    """

    scope = "auth_failures"

    def __init__(self, request: Request) -> None:
        super().__init__()
        self.counter = self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def get_rate(self) -> str | None:
        return settings.API_AUTH_FAILURE_RATE

    def check(self) -> None:
        """Raise ``Throttled`` while the address has no refusals left in its window."""
        if self.rate is None:
            return
        try:
            count, remaining = _shared_cache().hits(self.counter)
        except RedisError as exc:
            logger.warning("failed-key limit not applied, the cache's Redis failed: %s", exc)
            return
        if count >= self.num_requests:
            raise _too_many_refused(remaining)

    def count_failure(self) -> None:
        """Count one refused key; one past the limit (requests that raced) is a 429 too."""
        if self.rate is None:
            return
        try:
            count, remaining = _shared_cache().hit(self.counter, self.duration)
        except RedisError as exc:
            logger.warning("failed-key limit not applied, the cache's Redis failed: %s", exc)
            return
        if count > self.num_requests:
            raise _too_many_refused(remaining)


def _too_many_refused(remaining: int) -> exceptions.Throttled:
    return exceptions.Throttled(
        wait=remaining,
        detail=(
            "too many refused API keys from this address; no key from it is checked "
            "until the window ends."
        ),
    )


def _shared_cache() -> SharedRedisCache:
    counter = caches["default"]
    if not isinstance(counter, SharedRedisCache):
        raise ImproperlyConfigured(
            "API rate limits count in Redis: CACHES['default'] must be "
            f"mintsite.cache.SharedRedisCache, not {type(counter).__name__}"
        )
    return counter


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "mintsite.api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key of the collection, from `manage.py create_api_key`",
        }


class CollectionKeyRequired(BasePermission):
    """The request carries a key of the collection named in the URL (``<slug>``)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            raise exceptions.NotAuthenticated(
                "this endpoint needs an API key of the collection: "
                "'Authorization: Bearer <key>' (manage.py create_api_key <collection> <name>)"
            )
        slug = view.kwargs.get("slug")
        if key.collection.slug != slug:
            raise exceptions.PermissionDenied(
                f"this API key belongs to collection {key.collection.slug!r}, not {slug!r}",
                code="wrong_collection",
            )
        return True


class AtomicRateThrottle(SimpleRateThrottle):
    """A fixed window per client, counted in Redis in one atomic step.

    DRF's ``SimpleRateThrottle`` reads a client's history, then writes it back: requests that
    race (threads, or several gunicorn workers and machines) read the same history and all
    pass. Here each request is one INCR on the shared cache (``mintsite.cache``), so exactly
    the rate's number of requests pass in a window, however many arrive at once. The window
    starts with the client's first request; ``Retry-After`` is the time until it ends.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        try:
            count, self.remaining = _shared_cache().hit(self.key, self.duration)
        except RedisError as exc:
            # Reads must not go down with the cache: without a count, the request passes.
            logger.warning("rate limit not applied, the cache's Redis failed: %s", exc)
            return True
        return count <= self.num_requests

    def wait(self) -> float | None:
        return getattr(self, "remaining", None)


class AnonymousThrottle(AtomicRateThrottle, AnonRateThrottle):
    """Anonymous clients, per address, at ``API_ANON_RATE`` (read when each request starts,
    so a changed setting applies at once; None turns it off). Behind a reverse proxy the
    address is taken from ``X-Forwarded-For`` (``API_NUM_PROXIES``)."""

    def get_rate(self) -> str | None:
        return settings.API_ANON_RATE


class ApiKeyThrottle(AtomicRateThrottle):
    """Requests made with a key, per key, at ``API_KEY_RATE``."""

    scope = "api_key"

    def get_rate(self) -> str | None:
        return settings.API_KEY_RATE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ApiKey):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}
        return None
