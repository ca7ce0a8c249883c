"""Who may read what the operator's endpoints tell: ``METRICS_TOKEN``.

``/metrics`` (wallet addresses and balances, queue depths) and the details of ``/readyz``
(each dependency's host, path and error) are for the operator's scrapers and probes. With
``METRICS_TOKEN`` set — production refuses to start without it (``mintsite/settings.py``) —
they need ``Authorization: Bearer <token>``; in development, with none set, they stay open.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest


def has_metrics_access(request: HttpRequest) -> bool:
    """No ``METRICS_TOKEN`` is set, or the request carries it as a bearer token."""
    expected = settings.METRICS_TOKEN
    if not expected:
        return True
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), expected.encode()
    )
