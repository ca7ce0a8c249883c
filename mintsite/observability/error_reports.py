"""Error reports (Sentry, or a service that speaks its protocol), with nothing secret in them.

Off unless ``SENTRY_DSN`` (or ``SENTRY_DSN_FILE``) is set: then :func:`start` runs where the
settings are loaded, so the web tier, the Dramatiq workers, the listener and every management
command report alike. The Django integration reports a request that fails (500), the Dramatiq
integration a message whose actor raises (each failed try; ``Retry`` and an actor's ``throws=``
are expected and not reported), and the logging integration every ERROR line (a stage that
gives up, ``generation.failures``), with the lines before it as breadcrumbs.

This backend holds hot wallet keys, so what leaves is scrubbed in two passes (docs/observability.md):

- by name, at any depth (request headers and bodies, a frame's local variables, extras): a key
  that ends in ``key`` or names a password, secret, token, cookie, session, authorization,
  credentials or signature has its value replaced, whatever the value;
- by value, in every string left: the values of the settings that hold secrets (``*_KEY``,
  ``*_PASSWORD``, ``*_TOKEN``, ``*_SECRET``, ``DJANGO_SECRET_KEY``, the passwords in the database
  and Redis URLs), anything shaped like a private key (64 hex digits: transaction hashes look
  the same and are hidden too; the logs keep them), ``Bearer``/``Basic`` credentials, this
  backend's API keys and webhook secrets, the credentials in a URL, and the path and query of a
  URL on any host other than the site's own (RPC providers put their key there).

Request bodies are never sent, cookies and the client's address neither (no default PII).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import metadata
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

FILTERED = "[Filtered]"
PACKAGE = "mint-on-demand"

# Names whose value is dropped, at any depth. Normalised: lower case, "-" as "_".
_SECRET_NAME = re.compile(
    r"(key|keys|password|passwd|passphrase|secret|secrets|mnemonic|authorization|cookie|cookies"
    r"|credential|credentials|signature|dsn)$"
    r"|^(token|session|sessionid|csrftoken|csrf_token|x_csrftoken|set_cookie|auth)$"
    r"|(access|api|auth|bearer|metrics|service|refresh|pinning)_token$"
    r"|password|secret|private"
)
# Settings whose values are secrets, scrubbed wherever they appear.
_SECRET_SETTING = re.compile(r"(_KEY|_PASSWORD|_TOKEN|_SECRET)$")
_PRIVATE_KEY = re.compile(r"(?<![0-9A-Za-z])(?:0x)?[0-9a-fA-F]{64}(?![0-9A-Za-z])")
_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s'\",;]+")
_API_KEY = re.compile(r"\b(mint_[0-9a-f]+_)[A-Za-z0-9_-]{8,}")  # mintsite.models.ApiKey.issue
_WEBHOOK_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}")
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s'\"<>]+)")
_URLLIB3_PATH = re.compile(r"(with url: )\S+")  # urllib3's retry errors name the path alone
_QUERY_PARTS = {"http.query", "http.fragment"}
_WEB_SCHEMES = {
    "http://",
    "https://",
    "ws://",
    "wss://",
}  # paths of others (redis://…/0) tell nothing


def start(dsn: str, *, environment: str, own_hosts: Iterable[str] = ()) -> None:
    """Start the Sentry SDK for this process: the Django and Dramatiq integrations, the release
    as this package's version, no PII, and :class:`Scrubber` over every event and breadcrumb.
    Must run before the Dramatiq broker is created (its integration patches the broker)."""
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration

    scrubber = Scrubber(own_hosts)
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release(),
        integrations=[DjangoIntegration(), DramatiqIntegration()],
        # send_default_pii is left at its default, off (sentry-sdk 2.7x deprecates setting
        # it): no cookies, no user, no client address
        max_request_body_size="never",  # API writes and admin forms carry secrets
        before_send=scrubber.event,
        before_breadcrumb=scrubber.breadcrumb,
    )


def release() -> str | None:
    try:
        return f"{PACKAGE}@{metadata.version(PACKAGE)}"
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        return None


class Scrubber:
    """Drops secrets from an event or a breadcrumb before it is sent (see the module's doc)."""

    def __init__(self, own_hosts: Iterable[str] = ()) -> None:
        self.own_hosts = {host.lower().lstrip(".") for host in own_hosts if host}
        self._known: list[str] | None = None

    def event(self, event: Event, hint: Hint) -> Event:
        scrubbed: Event = self.scrub(event)
        return scrubbed

    def breadcrumb(self, crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb:
        data = crumb.get("data")
        if isinstance(data, dict):  # an outgoing request's query (split from its URL)
            crumb["data"] = {k: v for k, v in data.items() if k not in _QUERY_PARTS}
        scrubbed_crumb: Breadcrumb = self.scrub(crumb)
        return scrubbed_crumb

    def scrub(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: FILTERED
                if isinstance(key, str) and is_secret_name(key) and value[key] not in (None, "")
                else self.scrub(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.scrub(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def text(self, text: str) -> str:
        for secret in self.known_secrets():
            if secret in text:
                text = text.replace(secret, FILTERED)
        text = _PRIVATE_KEY.sub(FILTERED, text)
        text = _CREDENTIALS.sub(rf"\1\2{FILTERED}", text)
        text = _API_KEY.sub(rf"\1{FILTERED}", text)
        text = _WEBHOOK_SECRET.sub(f"whsec_{FILTERED}", text)
        text = _URLLIB3_PATH.sub(rf"\1{FILTERED}", text)
        return _URL.sub(self._url, text)

    def _url(self, match: re.Match[str]) -> str:
        scheme, rest = match.group(1), match.group(2)
        authority, sep, tail = rest.partition("/")
        if "?" in authority:  # no path, a query straight after the host
            authority, _, query = authority.partition("?")
            sep, tail = "?", query
        if "@" in authority:
            authority = f"{FILTERED}@{authority.rpartition('@')[2]}"
        try:
            host = (urlsplit(f"{scheme}{authority}").hostname or "").lower()
        except ValueError:
            host = ""
        if not tail or host in self.own_hosts or scheme.lower() not in _WEB_SCHEMES:
            return f"{scheme}{authority}{sep}{tail}"
        return f"{scheme}{authority}/{FILTERED}"

    def known_secrets(self) -> list[str]:
        """The secret values in the settings, read once (the settings are loaded by the time
        anything is reported), longest first so one that contains another goes whole."""
        if self._known is None:
            from django.conf import settings

            values: set[str] = set()
            for name in dir(settings):
                if name.isupper() and (_SECRET_SETTING.search(name) or name == "SECRET_KEY"):
                    value = getattr(settings, name, None)
                    if isinstance(value, str):
                        values.add(value)
                        values.add(value.removeprefix("0x"))
            for database in settings.DATABASES.values():
                values.add(str(database.get("PASSWORD") or ""))
            for url_setting in ("REDIS_URL", "CACHE_URL", "RPC_URL", "IPFS_PINNING_SERVICE_URL"):
                values.add(urlsplit(str(getattr(settings, url_setting, "") or "")).password or "")
            # shorter values would also hide ordinary words; none of the secrets is that short
            self._known = sorted((v for v in values if len(v) >= 8), key=len, reverse=True)
        return self._known


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name.lower().replace("-", "_")))
