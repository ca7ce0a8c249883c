"""Signing and verifying webhook deliveries (standard library only: receivers may copy it).

Every delivery carries ``Mint-Signature: t=<unix seconds>,v1=<hex>``, where the hex is
HMAC-SHA256, keyed with the subscription's secret, over ``f"{t}.".encode() + raw body``. A
receiver recomputes it from the *raw* request body (before any JSON parsing), compares in
constant time, and refuses a timestamp older (or newer) than a few minutes, so a captured
delivery cannot be replayed later. Several ``v1=`` entries may appear (while a secret is being
rotated); one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Mint-Signature"
SCHEME = "v1"


class SignatureError(ValueError):
    """A delivery whose signature does not check out; the message says why."""


class MalformedSignatureHeader(SignatureError):
    pass


class StaleTimestamp(SignatureError):
    pass


class BadSignature(SignatureError):
    pass


def compute(payload: bytes, secret: str, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}." + payload`` under ``secret``."""
    signed = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Mint-Signature`` header value for ``payload`` sent at ``timestamp`` (default: now)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{SCHEME}={compute(payload, secret, t)}"


def parse(header: str) -> tuple[int, list[str]]:
    """(timestamp, [v1 signatures]) from a header value; raises MalformedSignatureHeader."""
    if not header or not header.strip():
        raise MalformedSignatureHeader(f"the {HEADER} header is missing or empty")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not value:
            raise MalformedSignatureHeader(
                f"{HEADER} item {item.strip()!r} is not key=value (expected t=<unix>,v1=<hex>)"
            )
        if key == "t":
            if not (value.isascii() and value.isdigit()):  # isdigit() alone passes "²"
                raise MalformedSignatureHeader(f"{HEADER} timestamp {value!r} is not an integer")
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
        # other schemes are ignored, so new ones can be added beside v1
    if timestamp is None:
        raise MalformedSignatureHeader(f"{HEADER} has no t=<unix timestamp>")
    if not signatures:
        raise MalformedSignatureHeader(f"{HEADER} has no {SCHEME}=<signature>")
    return timestamp, signatures


def verify(
    payload: bytes, header: str, secret: str, tolerance: int = 300, now: float | None = None
) -> None:
    """Check that ``payload`` (the raw body) was signed with ``secret`` within ``tolerance``
    seconds of ``now``. Returns None; raises MalformedSignatureHeader, StaleTimestamp or
    BadSignature (all SignatureError, a ValueError)."""
    if not secret:
        raise ValueError("verify() needs the subscription's secret (whsec_...)")
    timestamp, signatures = parse(header)
    current = time.time() if now is None else now
    age = current - timestamp
    if tolerance and abs(age) > tolerance:
        direction = "old" if age > 0 else "in the future"
        raise StaleTimestamp(
            f"the signature's timestamp {timestamp} is {abs(age):.0f} s {direction}; "
            f"at most {tolerance} s is accepted (replayed delivery, or a clock out of sync)"
        )
    expected = compute(payload, secret, timestamp)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise BadSignature(
            "no v1 signature matches the body: it was changed on the way, parsed and "
            "re-serialized before checking, or signed with another secret"
        )
