"""Schema-driven fuzzing: schemathesis generates requests for every operation of the app's own
OpenAPI document (/api/schema/) and sends them to the WSGI app; none may answer a 5xx, and each
answer must be one the document describes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from generation import events
from generation.models import Token
from mintsite.models import ApiKey, WebhookSubscription
from mintsite.wsgi import application
from sales.building import create_allowlist_from_csv
from tests.test_api import make_collection, make_token, published_token

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
# No 5xx, and every answer is one the schema documents (status, media type, body).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
Status = Token.Status
ALLOWLISTED = "0x" + "ab" * 20  # on alpha's allowlist "presale"
_turns = itertools.count()


@pytest.fixture
def real_data(db: None, settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Collections, tokens in several states with their stages, a subscription and a key;
    throttling off and live progress bounded, so the fuzzer measures answers, not waits."""
    # The app is called as a WSGI server calls it, so each request would close the database
    # connection that holds the test's transaction; Django's own test client detaches the same
    # handler for the same reason.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    settings.API_ANON_RATE = None
    settings.API_KEY_RATE = None
    settings.API_AUTH_FAILURE_RATE = None
    settings.API_STREAM_MAX_SECONDS = 0.2
    settings.API_LONG_POLL_MAX_SECONDS = 1
    settings.API_RECHECK_SECONDS = 0.05
    cache.clear()
    alpha = make_collection("alpha", 1)
    make_collection("beta", 2)
    published_token(alpha, 1)
    rendering = make_token(alpha, 2, Status.RENDERING)
    events.record([rendering.pk], Status.RENDERING, "attempt 0")
    make_token(alpha, 3, Status.FAILED, seed="0x" + "44" * 32, failure_reason="pin failed")
    make_token(alpha, 4, Status.NEEDS_REVIEW, seed="0x" + "44" * 32)
    WebhookSubscription.objects.create(
        collection=alpha, url="https://studio.example/hooks", event_types=["token.stage"]
    )
    _, key = ApiKey.issue(alpha, "fuzzer")
    create_allowlist_from_csv(alpha, "presale", f"{ALLOWLISTED},3".encode())
    try:
        yield key
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_it_answers_every_generated_request_as_documented(
    case, real_data: str, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    # Every other request is aimed at the real data (a slug, a token id, a subscription that
    # exist) with the collection's key, so the fuzzer gets past the 404s and 401s too.
    if next(_turns) % 2:
        params = case.path_parameters or {}
        if "slug" in params:
            params["slug"] = "alpha"
        if "token_id" in params:
            params["token_id"] = 1 + next(_turns) % 4
        if "allowlist" in params:
            params["allowlist"] = "presale"
        if "address" in params and next(_turns) % 2:
            params["address"] = ALLOWLISTED
        if "id" in params:  # a DELETE example may have removed it: then any id does
            params["id"] = WebhookSubscription.objects.values_list("pk", flat=True).first() or 1
        case.call_and_validate(headers={"Authorization": f"Bearer {real_data}"}, checks=CHECKS)
    else:
        case.call_and_validate(checks=CHECKS)
