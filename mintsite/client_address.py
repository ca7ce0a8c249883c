"""The client's address, one rule for the whole web tier: the API's anonymous throttle and the
admin's login lockout (django-axes) key on the same value.

With no reverse proxy configured (``API_NUM_PROXIES=0``, the default) it is the socket's
address, ``REMOTE_ADDR``, whatever ``X-Forwarded-For`` claims; with N proxies in front, the
address N hops back in ``X-Forwarded-For``. This is DRF's rule (``BaseThrottle.get_ident``
reading ``REST_FRAMEWORK["NUM_PROXIES"]``), used here as is so the two can never drift apart.
"""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle


def client_address(request: HttpRequest) -> str | None:
    """The address the request came from, under the ``API_NUM_PROXIES`` policy; None for a
    request without one (Django's test client's ``force_login`` sends such a request)."""
    return BaseThrottle().get_ident(request) or None  # type: ignore[arg-type]
