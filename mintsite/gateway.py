"""``GET /ipfs/<cid>``: the gateway for the embedded content-addressed store.

It serves the ``local`` pinning backend (``IPFS_STORE_DIR``): raw CIDs (single-chunk content,
token metadata) and dag-pb roots (larger images) alike. Only bytes that still give the requested
CID are served (the store recomputes it on every read); a corrupted file is answered with an
error, never with its bytes. The canonical CID is the ETag and, content being immutable, the
response may be cached for a year; a matching ``If-None-Match`` gets 304 without a disk read.

A trustless client asks for the raw block instead (``?format=raw`` or ``Accept:
application/vnd.ipld.raw``, as on Kubo's gateway and ipfs.io): the node of a published model
folder (a UnixFS directory) is served only that way, and so is any stored file's root block, so
``mintverify --fetch-weights`` can walk a folder checking every block against its CID.

The bytes are whatever was pinned, and this view shares the site's origin: a stored HTML or SVG
page served as such could run script with the admin's cookies. So the type is one of a short
list recognised by magic bytes (PNG, JPEG, GIF, WebP, JSON) and otherwise
``application/octet-stream``, never ``text/html`` or ``image/svg+xml``; ``nosniff`` stops the
browser guessing, and a ``sandbox`` CSP stops anything from running should it render anyway.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.views.decorators.http import require_safe

from ipfs.cid import canonical_cid
from ipfs.errors import ContentCorrupted, ContentNotFound, InvalidCID
from ipfs.store import LocalStore

logger = logging.getLogger(__name__)

CACHE_CONTROL = "public, max-age=31536000, immutable"
CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox"
RAW_BLOCK = "application/vnd.ipld.raw"

_SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
]


def content_type_for(data: bytes) -> str:
    """Sniff the media type of stored bytes (renders are PNG, metadata is JSON)."""
    for magic, content_type in _SIGNATURES:
        if data.startswith(magic):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.lstrip()[:1] in (b"{", b"["):
        try:
            json.loads(data)
        except ValueError:
            pass
        else:
            return "application/json"
    return "application/octet-stream"


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison of ``If-None-Match`` (a list of tags, or ``*``) with ``etag``."""
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def _error(status: int, code: str, detail: str) -> JsonResponse:
    response = JsonResponse({"error": code, "detail": detail}, status=status)
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_safe
def ipfs_gateway(request: HttpRequest, cid: str) -> HttpResponse:
    try:
        canonical = canonical_cid(cid)
    except InvalidCID as exc:
        return _error(400, "invalid_cid", str(exc))
    raw = request.GET.get("format") == "raw" or RAW_BLOCK in request.headers.get("Accept", "")
    etag = f'"{canonical}.raw"' if raw else f'"{canonical}"'
    headers = {
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL,
        "X-Ipfs-Path": f"/ipfs/{canonical}",
        # public, content-addressed bytes: any page may fetch them, as public gateways allow
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Vary": "Accept",
    }
    if _matches(request.headers.get("If-None-Match", ""), etag):
        return HttpResponseNotModified(headers=headers)
    store = LocalStore(Path(settings.IPFS_STORE_DIR))
    try:
        data = store.block(canonical) if raw else store.get(canonical)
    except ContentNotFound:
        if store.has_block(canonical):
            return _error(
                406, "directory", f"{cid} is a directory: ask for its block with ?format=raw"
            )
        return _error(404, "not_found", f"{cid} is not in this node's store")
    except ContentCorrupted as exc:
        # The path stays in the server's log; the client learns only that the copy is bad.
        logger.error("gateway: %s", exc)
        return _error(500, "corrupted", f"the stored copy of {cid} fails verification")
    content_type = RAW_BLOCK if raw else content_type_for(data)
    response = HttpResponse(data, content_type=content_type, headers=headers)
    response["Content-Length"] = str(len(data))
    return response
