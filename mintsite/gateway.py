"""``GET /ipfs/<cid>``: the gateway for the embedded content-addressed store.

Only bytes that hash to the requested CID are served; the CID is the ETag and, content being
immutable, the response may be cached for a year.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse

from generation.ipfs import ContentNotFound, InvalidCID, IpfsError, LocalStore

_SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"RIFF", "image/webp"),
]


def content_type_for(data: bytes) -> str:
    for magic, content_type in _SIGNATURES:
        if data.startswith(magic):
            return content_type
    if data[:1] in (b"{", b"["):
        return "application/json"
    return "application/octet-stream"


def ipfs_gateway(request: HttpRequest, cid: str) -> HttpResponse:
    etag = f'"{cid}"'
    if request.headers.get("If-None-Match") == etag:
        return HttpResponseNotModified(headers={"ETag": etag})
    store = LocalStore(Path(settings.IPFS_STORE_DIR))
    try:
        data = store.get(cid)
    except InvalidCID as exc:
        return JsonResponse({"error": "invalid_cid", "detail": str(exc)}, status=400)
    except ContentNotFound:
        return JsonResponse(
            {"error": "not_found", "detail": f"{cid} is not in this node's store"}, status=404
        )
    except IpfsError as exc:
        return JsonResponse({"error": "corrupted", "detail": str(exc)}, status=500)
    response = HttpResponse(data, content_type=content_type_for(data))
    response["ETag"] = etag
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    response["X-Ipfs-Path"] = f"/ipfs/{cid}"
    return response
