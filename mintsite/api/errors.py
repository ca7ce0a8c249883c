"""Every API error as ``{"error": {"code": ..., "message": ..., "status": ...}}``.

``code`` is stable (clients branch on it), ``message`` is for people and may change. Invalid
input adds ``fields`` (field → messages); a throttled request adds ``retry_after`` (seconds).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger("mintsite.api")

# DRF's own codes, renamed where ours say more.
_CODES = {
    "not_authenticated": "api_key_required",
    "authentication_failed": "invalid_api_key",
    "invalid": "invalid_request",
    "parse_error": "malformed_json",
    "unsupported_media_type": "unsupported_media_type",
}


class ApiError(exceptions.APIException):
    """An error with its own code: ``raise ApiError("...", code="...", status=409)``."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status


class NotFound(ApiError):
    def __init__(self, message: str, *, code: str = "not_found") -> None:
        super().__init__(message, code=code, status=status.HTTP_404_NOT_FOUND)


class InvalidRequest(ApiError):
    def __init__(self, message: str, *, code: str = "invalid_request") -> None:
        super().__init__(message, code=code, status=status.HTTP_400_BAD_REQUEST)


# Requeueing a token (mintsite/api/requeue.py): raised below the view, which answers with the
# code and status each carries.
class RequeueError(Exception):
    """A token cannot be sent back through its stage now; the message says why."""

    code = "not_requeueable"
    http_status = 409


class NotRequeueable(RequeueError):
    """Its status or history rules a requeue out (not FAILED or NEEDS_REVIEW, a seed mismatch)."""


class TokenChanged(RequeueError):
    """It moved while being requeued; asking again reads it afresh."""

    code = "token_changed"


class BrokerUnavailable(RequeueError, ConnectionError):
    """The message could not be sent; the token was left as it was."""

    code = "broker_unavailable"
    http_status = 503


def error_body(code: str, message: str, http_status: int, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": http_status, **extra}}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """A ValidationError's nested detail as ``{"field.sub": ["message", ...]}``."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            if isinstance(key, int):  # a list's item: event_types[0]
                out.update(_flatten(value, f"{prefix}[{key}]"))
                continue
            name = "request" if key == "non_field_errors" else str(key)
            out.update(_flatten(value, f"{prefix}.{name}" if prefix else name))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or "request": [str(item) for item in detail]}
        out = {}
        for index, item in enumerate(detail):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix or "request": [str(detail)]}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: DRF's handling, in our shape, and JSON for the
    unexpected too (logged with its traceback; the client gets a code, not the traceback)."""
    if isinstance(exc, Http404) and not isinstance(exc, exceptions.NotFound):
        exc = exceptions.NotFound(str(exc) or "not found")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, RequestDataTooBig):  # Django's DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = ApiError(
            f"the request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes",
            code="request_too_large",
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    elif isinstance(exc, TooManyFieldsSent):  # DATA_UPLOAD_MAX_NUMBER_FIELDS
        exc = ApiError(
            f"the request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} parameters",
            code="too_many_parameters",
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        request = context.get("request")
        log.error(
            "unhandled error in %s %s",
            getattr(request, "method", "?"),
            getattr(request, "path", "?"),
            exc_info=exc,
        )
        return Response(
            error_body("server_error", "the server failed to answer; it is logged", 500),
            status=500,
        )
    assert isinstance(exc, exceptions.APIException)
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        code = "invalid_request"
        summary = "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
        message = f"invalid request: {summary}"
        extra["fields"] = fields
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        code = _CODES.get(code, code)
        message = str(exc.detail)
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        extra["retry_after"] = int(exc.wait + 0.999)
    response.data = error_body(code, message, response.status_code, **extra)
    return response


def _json_error(code: str, message: str, http_status: int) -> JsonResponse:
    return JsonResponse(error_body(code, message, http_status), status=http_status)


@csrf_exempt  # a POST to a wrong path is told so, not refused for a missing CSRF cookie
def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """The catch-all of /api/ (and usable as ``handler404`` for /api/ paths)."""
    message = f"no API endpoint at {request.path}"
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found:
            message += f"; did you mean {request.path}/ (with the trailing slash)?"
    return _json_error("not_found", message, 404)


def server_error(request: HttpRequest) -> JsonResponse:
    """Usable as ``handler500`` for /api/ paths (DRF views already answer JSON themselves)."""
    return _json_error("server_error", "the server failed to answer; it is logged", 500)
