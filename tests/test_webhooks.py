"""Webhooks end to end: events → deliveries → signed POSTs to a real receiver, retried, replayed."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
import standardwebhooks
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone
from dramatiq import Worker
from standardwebhooks import WebhookVerificationError

from chain.anvil import free_port
from generation import events
from generation.models import Collection, Token
from generation.stages import WEBHOOK_QUEUE
from mintsite import webhook_signature, webhooks
from mintsite.models import (
    EventType,
    WebhookDelivery,
    WebhookScheme,
    WebhookSubscription,
    new_webhook_secret,
)
from mintsite.tasks import deliver_webhook
from mintsite.webhook_signature import (
    BadSignature,
    MalformedSignatureHeader,
    StaleTimestamp,
    sign,
    verify,
)
from tests.test_api import make_collection, make_token
from tests.webhook_servers import RawServer

pytestmark = pytest.mark.django_db
Status = Token.Status
Delivery = WebhookDelivery.Status


class Receiver:
    """A real HTTP endpoint on 127.0.0.1 that answers each POST with the next scripted status
    (the last one repeats) and keeps what it received."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = list(answers)
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers.items()), body))
                status = (
                    receiver.answers.pop(0) if len(receiver.answers) > 1 else receiver.answers[0]
                )
                reply = b"thanks" if status < 300 else b"boom: the receiver is down"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mint"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def allow_local(settings: Any, port: int) -> None:
    """Let deliveries reach a receiver of this test on 127.0.0.1:``port`` (by default only
    public addresses on ports 80 and 443 are, mintsite/egress.py)."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_ALLOWED_PORTS = [*settings.WEBHOOK_ALLOWED_PORTS, port]


@pytest.fixture
def receiver(settings) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    started: list[Receiver] = []

    def start(*answers: int) -> Receiver:
        started.append(Receiver(list(answers) or [200]))
        allow_local(settings, started[-1].server.server_address[1])
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def alpha() -> Collection:
    return make_collection("alpha", 1)


def subscribe(collection: Collection, url: str, *types: str, **fields: Any) -> WebhookSubscription:
    return WebhookSubscription.objects.create(
        collection=collection, url=url, event_types=list(types), **fields
    )


def delivery_for(subscription: WebhookSubscription, status: str = Status.RENDERING) -> int:
    """One stored delivery of a token entering ``status``, as the dispatcher makes it."""
    token = make_token(subscription.collection, 1 + Token.objects.count(), status)
    (pk,) = webhooks.create_deliveries(events.record([token.pk], status, "what happened"))
    return pk


def test_it_delivers_a_signed_event_to_a_real_receiver(
    alpha: Collection, receiver, redis_url: str, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    endpoint = receiver(200)
    subscription = subscribe(alpha, endpoint.url, EventType.STAGE)
    token = make_token(alpha, 7, Status.RENDERING)
    # The pipeline records an event; once its transaction commits, the subscriber registered
    # by MintsiteConfig.ready() stores the delivery and queues it.
    with django_capture_on_commit_callbacks(execute=True):
        events.record([token.pk], Status.RENDERING, "attempt 0")
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "token.stage" and delivery.status == Delivery.PENDING

    deliver_webhook.fn(delivery.pk)

    ((headers, body),) = endpoint.received
    verify(body, headers["Mint-Signature"], subscription.secret)
    payload = json.loads(body)
    assert payload["type"] == "token.stage" and payload["collection"] == "alpha"
    assert payload["id"] == headers["Mint-Event-Id"] == delivery.event_id
    assert payload["data"]["event"]["status"] == "RENDERING"
    assert payload["data"]["event"]["detail"] == "attempt 0"
    assert payload["data"]["token"]["token_id"] == 7
    assert headers["Content-Type"] == "application/json"
    delivery.refresh_from_db()
    assert delivery.status == Delivery.DELIVERED and delivery.attempts == 1
    assert delivery.last_status_code == 200 and delivery.last_duration_ms is not None
    assert [a.status_code for a in delivery.log.all()] == [200]

    # What an attacker might try is refused by the helper.
    with pytest.raises(BadSignature, match="no v1 signature matches"):
        verify(
            body.replace(b"RENDERING", b"PUBLISHED"), headers["Mint-Signature"], subscription.secret
        )
    with pytest.raises(StaleTimestamp, match="at most 300 s"):
        verify(body, headers["Mint-Signature"], subscription.secret, now=time.time() + 3600)
    replayed_later = sign(body, subscription.secret, timestamp=int(time.time()) - 600)
    with pytest.raises(StaleTimestamp, match=r"is 60\d s old; at most 300 s"):
        verify(body, replayed_later, subscription.secret)
    with pytest.raises(BadSignature):
        verify(body, headers["Mint-Signature"], "whsec_another_secret")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "missing or empty"),
        ("v1=abc", "no t=<unix timestamp>"),
        ("t=123", "no v1=<signature>"),
        ("t=yesterday,v1=abc", "is not an integer"),
        ("t=²,v1=abc", "is not an integer"),  # a digit to str.isdigit(), not to int()
        ("t=1,v1", "is not key=value"),
    ],
)
def test_it_refuses_a_malformed_signature_header(header: str, message: str) -> None:
    with pytest.raises(MalformedSignatureHeader, match=message):
        verify(b"{}", header, "whsec_x")


def test_it_accepts_any_of_several_signatures_while_a_secret_rotates() -> None:
    t = int(time.time())
    header = f"t={t},v1={webhook_signature.compute(b'{}', 'old', t)},v1=" + (
        webhook_signature.compute(b"{}", "new", t)
    )
    verify(b"{}", header, "new")
    verify(b"{}", header, "old")


def test_it_creates_deliveries_only_for_the_events_asked_for(alpha: Collection) -> None:
    beta = make_collection("beta", 2)
    published = subscribe(alpha, "https://a.example/published", EventType.PUBLISHED)
    trouble = subscribe(
        alpha, "https://a.example/trouble", EventType.FAILED, EventType.NEEDS_REVIEW
    )
    stages = subscribe(alpha, "https://a.example/stages", EventType.STAGE)
    subscribe(alpha, "https://a.example/off", EventType.STAGE, active=False)
    subscribe(beta, "https://b.example/stages", EventType.STAGE)
    first, second = make_token(alpha, 1), make_token(alpha, 2)
    recorded = [
        *events.record([first.pk, second.pk], Status.RENDERING),
        *events.record([first.pk], Status.PUBLISHED),
        *events.record([second.pk], Status.NEEDS_REVIEW, "the gate said no"),
    ]
    created = webhooks.create_deliveries(recorded)

    def kinds(subscription: WebhookSubscription) -> list[str]:
        return sorted(d.event_type for d in subscription.deliveries.all())

    assert kinds(published) == ["token.published"]
    assert kinds(trouble) == ["token.needs_review"]
    assert kinds(stages) == ["token.stage"] * 4
    assert WebhookDelivery.objects.count() == len(created) == 6
    # Hearing the same events twice makes no second delivery.
    webhooks.create_deliveries(recorded)
    assert WebhookDelivery.objects.count() == 6
    review = trouble.deliveries.get()
    body = json.loads(bytes(review.payload))
    assert body["data"]["event"]["detail"] == "the gate said no"
    assert body["id"] == review.event_id and review.event_id.endswith("_needs_review")


def test_it_retries_a_receiver_that_failed_until_it_accepts(
    alpha: Collection, receiver, redis_url: str, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_RETRY_BASE = 0  # the next try is due at once
    endpoint = receiver(500, 200)
    subscription = subscribe(alpha, endpoint.url, EventType.STAGE)
    pk = delivery_for(subscription)

    deliver_webhook.fn(pk)
    delivery = WebhookDelivery.objects.get(pk=pk)
    assert delivery.status == Delivery.PENDING and delivery.attempts == 1
    assert delivery.last_status_code == 500
    assert delivery.last_error == "the receiver answered HTTP 500"
    assert delivery.next_attempt_at is not None

    deliver_webhook.fn(pk)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.DELIVERED and delivery.attempts == 2
    assert delivery.delivered_at is not None and delivery.last_error == ""
    assert [(a.number, a.status_code) for a in delivery.log.all()] == [(1, 500), (2, 200)]
    assert [h["Mint-Delivery-Attempt"] for h, _ in endpoint.received] == ["1", "2"]
    assert len({h["Mint-Event-Id"] for h, _ in endpoint.received}) == 1
    for headers, body in endpoint.received:
        verify(body, headers["Mint-Signature"], subscription.secret)


def test_a_url_the_http_client_cannot_parse_is_a_failed_try_not_a_stuck_delivery(
    alpha: Collection, settings
) -> None:  # type: ignore[no-untyped-def]
    # Given a subscription whose URL Django's validator accepted but httpx cannot parse
    settings.WEBHOOK_RETRY_BASE = 60
    pk = delivery_for(subscribe(alpha, "http://\u2603.com/", EventType.STAGE))
    # When its delivery is tried
    delivery = webhooks.attempt_delivery(pk)
    # Then the try is recorded as failed, with the reason, and the next one is scheduled
    assert delivery is not None and delivery.status == Delivery.PENDING
    assert delivery.attempts == 1 and delivery.next_attempt_at is not None
    assert delivery.last_error.startswith("refused: the URL cannot be delivered to")


def test_it_waits_until_a_retry_is_due(alpha: Collection, receiver, settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_RETRY_BASE = 60
    endpoint = receiver(503)
    pk = delivery_for(subscribe(alpha, endpoint.url, EventType.STAGE))
    first = webhooks.attempt_delivery(pk)
    assert first is not None and first.status == Delivery.PENDING
    # A duplicate message before the retry is due sends nothing.
    assert webhooks.attempt_delivery(pk) is None
    assert len(endpoint.received) == 1
    assert WebhookDelivery.objects.get(pk=pk).attempts == 1


def test_it_gives_up_after_the_configured_attempts(alpha: Collection, receiver, settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_RETRY_BASE = 0
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    endpoint = receiver(503)
    pk = delivery_for(subscribe(alpha, endpoint.url, EventType.STAGE))
    for _ in range(5):
        webhooks.attempt_delivery(pk)
    delivery = WebhookDelivery.objects.get(pk=pk)
    assert delivery.status == Delivery.FAILED and delivery.attempts == 3
    assert len(endpoint.received) == 3


def test_it_logs_a_receiver_that_cannot_be_reached(alpha: Collection, settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_RETRY_BASE = 30
    port = free_port()
    allow_local(settings, port)
    nobody = f"http://127.0.0.1:{port}/hooks"
    pk = delivery_for(subscribe(alpha, nobody, EventType.STAGE))
    before = time.time()
    delivery = webhooks.attempt_delivery(pk)
    assert delivery is not None and delivery.status == Delivery.PENDING
    assert delivery.last_status_code is None
    assert delivery.last_error == "could not connect to the receiver"
    assert delivery.next_attempt_at.timestamp() >= before + 30


def test_it_backs_off_exponentially_up_to_the_cap(settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOK_RETRY_BASE, settings.WEBHOOK_RETRY_MAX = 60, 3600
    assert [webhooks.backoff(n) for n in range(1, 9)] == [
        60, 120, 240, 480, 960, 1920, 3600, 3600,
    ]  # fmt: skip


def example_receiver(tmp_path: Path) -> Path:
    """The receiver docs/webhooks.md offers integrators to copy, as a file."""
    docs = (Path(__file__).parent.parent / "docs" / "webhooks.md").read_text()
    (source,) = re.findall(r'```python\n("""receiver\.py.*?)```', docs, flags=re.S)
    path = tmp_path / "receiver.py"
    path.write_text(source)
    return path


def test_it_is_verified_by_the_documented_example_receiver(
    alpha: Collection, tmp_path: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    allow_local(settings, port)
    url = f"http://127.0.0.1:{port}/hooks"
    subscription = subscribe(alpha, url, EventType.STAGE)
    process = subprocess.Popen(
        [sys.executable, str(example_receiver(tmp_path)), str(port)],
        env={**os.environ, "MINT_WEBHOOK_SECRET": subscription.secret},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the example receiver did not start"
                time.sleep(0.05)
        pk = delivery_for(subscription)
        delivery = webhooks.attempt_delivery(pk)
        assert delivery is not None and delivery.status == Delivery.DELIVERED
        assert delivery.last_status_code == 204

        body = bytes(delivery.payload)
        fresh = sign(body, subscription.secret)
        tampered = httpx.post(url, content=body + b" ", headers={"Mint-Signature": fresh})
        assert (tampered.status_code, tampered.text) == (400, "bad signature")
        old = sign(body, subscription.secret, timestamp=int(time.time()) - 3600)
        stale = httpx.post(url, content=body, headers={"Mint-Signature": old})
        assert stale.status_code == 400 and stale.text.startswith("stale timestamp")
        garbled = httpx.post(url, content=body, headers={"Mint-Signature": "v1=abc"})
        assert garbled.text == "malformed Mint-Signature header"
        # a timestamp of digits that are not ASCII ("²" passes str.isdigit(), not int())
        odd = "t=²,v1=abc".encode("latin-1")  # how http.server decodes a header's bytes
        superscript = httpx.post(url, content=body, headers={"Mint-Signature": odd})
        assert (superscript.status_code, superscript.text) == (
            400,
            "malformed Mint-Signature header",
        )
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert out.splitlines() == [f"token.stage {delivery.event_id} RENDERING"]


# --- admin -----------------------------------------------------------------------------------


def manager(name: str, *collections: Collection) -> User:
    """A manager as docs/admin.md grants one: a staff account in the collections' managers,
    with no Django model permissions ticked."""
    user = User.objects.create_user(name, password="pw", is_staff=True)
    for collection in collections:
        collection.managers.add(user)
    return user


def test_a_manager_with_exactly_the_documented_grant_may_do_what_the_docs_say_and_no_more(
    alpha: Collection, client: Client
) -> None:
    from mintsite.models import ApiKey, WebhookAttempt

    subscription = subscribe(alpha, "https://alpha.example/hooks", EventType.STAGE)
    delivery = delivery_for(subscription)
    WebhookAttempt.objects.create(delivery_id=delivery, number=1, status_code=503)
    key, _ = ApiKey.issue(alpha, "alpha site")
    client.force_login(manager("maria", alpha))

    # She sees the three lists on the admin's front page, and her rows in each
    front = client.get("/admin/").content.decode()
    for path in ("apikey", "webhooksubscription", "webhookdelivery"):
        assert f"/admin/mintsite/{path}/" in front
        assert client.get(f"/admin/mintsite/{path}/").status_code == 200
    # a delivery with its attempts
    page = client.get(f"/admin/mintsite/webhookdelivery/{delivery}/change/").content.decode()
    assert "503" in page and "attempt" in page.lower()
    # API keys: issue (test below), rename, revoke; never delete
    assert client.get("/admin/mintsite/apikey/add/").status_code == 200
    client.post("/admin/mintsite/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert ApiKey.objects.get(pk=key.pk).revoked
    assert client.get(f"/admin/mintsite/apikey/{key.pk}/delete/").status_code == 403
    # subscriptions: add, change, delete
    assert client.get("/admin/mintsite/webhooksubscription/add/").status_code == 200
    url = f"/admin/mintsite/webhooksubscription/{subscription.pk}"
    assert client.get(f"{url}/delete/").status_code == 200
    # deliveries: view and replay only
    assert client.get("/admin/mintsite/webhookdelivery/add/").status_code == 403
    assert client.get(f"/admin/mintsite/webhookdelivery/{delivery}/delete/").status_code == 403
    page = client.get(f"/admin/mintsite/webhookdelivery/{delivery}/change/").content.decode()
    assert 'name="_save"' not in page  # view only: nothing to save


def test_django_permissions_alone_show_no_key_or_webhook(alpha: Collection, client: Client) -> None:
    from mintsite.models import ApiKey

    # Eve is staff with every permission Django has for these models, but manages nothing
    eve = User.objects.create_user("eve", password="pw", is_staff=True)
    eve.user_permissions.set(Permission.objects.filter(content_type__app_label="mintsite"))
    key, _ = ApiKey.issue(alpha, "alpha site")
    subscription = subscribe(alpha, "https://alpha.example/hooks", EventType.STAGE)
    client.force_login(eve)

    assert "/admin/mintsite/" not in client.get("/admin/").content.decode()
    for path in ("apikey", "webhooksubscription", "webhookdelivery"):
        assert client.get(f"/admin/mintsite/{path}/").status_code == 403
    assert client.get("/admin/mintsite/apikey/add/").status_code == 403
    assert client.get(f"/admin/mintsite/apikey/{key.pk}/change/").status_code in (302, 403)
    response = client.get(f"/admin/mintsite/webhooksubscription/{subscription.pk}/change/")
    assert response.status_code in (302, 403)


def test_it_replays_a_delivery_from_the_admin_with_a_fresh_signature(
    alpha: Collection, receiver, redis_url: str, client: Client
) -> None:  # type: ignore[no-untyped-def]
    endpoint = receiver(200)
    subscription = subscribe(alpha, endpoint.url, EventType.STAGE)
    pk = delivery_for(subscription)
    deliver_webhook.fn(pk)
    client.force_login(manager("maria", alpha))

    response = client.post(
        "/admin/mintsite/webhookdelivery/",
        {"action": "replay", "_selected_action": [pk]},
        follow=True,
    )
    assert b"1 delivery queued" in response.content
    assert WebhookDelivery.objects.get(pk=pk).status == Delivery.PENDING
    deliver_webhook.fn(pk)

    (first_headers, first_body), (headers, body) = endpoint.received
    assert body == first_body  # the same event
    verify(body, headers["Mint-Signature"], subscription.secret)
    first_t = webhook_signature.parse(first_headers["Mint-Signature"])[0]
    assert webhook_signature.parse(headers["Mint-Signature"])[0] >= first_t
    assert headers["Mint-Delivery-Attempt"] == "2"
    delivery = WebhookDelivery.objects.get(pk=pk)
    assert delivery.status == Delivery.DELIVERED and delivery.attempts == 2


def test_it_shows_managers_only_their_collections_webhooks_and_keys(
    alpha: Collection, client: Client, admin_user: User
) -> None:
    from mintsite.models import ApiKey

    beta = make_collection("beta", 2)
    mine = delivery_for(subscribe(alpha, "https://alpha.example/hooks", EventType.STAGE))
    theirs = delivery_for(subscribe(beta, "https://beta.example/hooks", EventType.STAGE))
    ApiKey.issue(alpha, "alpha site")
    ApiKey.issue(beta, "beta site")
    client.force_login(manager("maria", alpha))

    deliveries = client.get("/admin/mintsite/webhookdelivery/").content.decode()
    assert "alpha.example" in deliveries and "beta.example" not in deliveries
    assert ">beta<" not in deliveries  # not even in the collection filter
    assert client.get(f"/admin/mintsite/webhookdelivery/{mine}/change/").status_code == 200
    assert client.get(f"/admin/mintsite/webhookdelivery/{theirs}/change/").status_code == 302
    subscriptions = client.get("/admin/mintsite/webhooksubscription/").content.decode()
    assert "alpha.example" in subscriptions and "beta.example" not in subscriptions
    keys = client.get("/admin/mintsite/apikey/").content.decode()
    assert "alpha site" in keys and "beta site" not in keys

    client.force_login(admin_user)
    everything = client.get("/admin/mintsite/webhookdelivery/").content.decode()
    assert "alpha.example" in everything and "beta.example" in everything


def test_it_shows_a_new_api_key_once_in_the_admin(alpha: Collection, client: Client) -> None:
    from mintsite.models import ApiKey

    client.force_login(manager("maria", alpha))
    response = client.post(
        "/admin/mintsite/apikey/add/", {"collection": alpha.pk, "name": "bot"}, follow=True
    )
    key = response.content.decode().split("<code>")[1].split("</code>")[0]
    row = ApiKey.objects.get()
    assert row.matches(key) and row.name == "bot" and row.collection == alpha
    beta = make_collection("beta", 2)
    refused = client.post("/admin/mintsite/apikey/add/", {"collection": beta.pk, "name": "x"})
    assert refused.status_code == 200  # the form again: beta is not a choice
    assert ApiKey.objects.count() == 1


def test_it_shows_a_new_subscriptions_secret_once_in_the_admin(
    alpha: Collection, client: Client
) -> None:
    client.force_login(manager("maria", alpha))
    response = client.post(
        "/admin/mintsite/webhooksubscription/add/",
        {
            "collection": alpha.pk,
            "url": "https://studio.example/hooks",
            "event_types": ["token.published", "token.failed"],
            "active": "on",
        },
        follow=True,
    )
    subscription = WebhookSubscription.objects.get()
    assert subscription.event_types == ["token.published", "token.failed"]
    assert f"<code>{subscription.secret}</code>" in response.content.decode()
    page = client.get(f"/admin/mintsite/webhooksubscription/{subscription.pk}/change/")
    assert subscription.secret not in page.content.decode()


# --- a slow or failing receiver cannot stall the pipeline (issue 15, item 3) -----------------


def test_deliveries_go_to_their_own_queue_not_the_pipelines(
    alpha: Collection, redis_url: str, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    import dramatiq

    from generation.stages import IO_QUEUE, QUEUES, WEBHOOK_QUEUE
    from mintsite.observability.metrics import queue_names

    broker = dramatiq.get_broker()
    for queue in QUEUES:
        broker.flush(queue)
    subscribe(alpha, "https://hooks.example/mint", EventType.STAGE)
    token = make_token(alpha, 7, Status.RENDERING)
    with django_capture_on_commit_callbacks(execute=True):
        events.record([token.pk], Status.RENDERING)

    def waiting(queue: str) -> list[str]:
        key = f"{broker.namespace}:{queue}.msgs"  # type: ignore[attr-defined]
        return [json.loads(m)["actor_name"] for m in broker.client.hvals(key)]  # type: ignore[attr-defined]

    # The delivery waits on the webhooks queue, which only the webhook worker serves
    assert waiting(WEBHOOK_QUEUE) == ["deliver_webhook"] and waiting(IO_QUEUE) == []
    assert deliver_webhook.queue_name == WEBHOOK_QUEUE
    assert WEBHOOK_QUEUE in queue_names()  # its depth is on /metrics
    broker.flush(WEBHOOK_QUEUE)
    deploy = (Path(__file__).parent.parent / "docs" / "deploy.md").read_text()
    for queue in QUEUES:  # a worker line for each queue
        assert f"--queues {queue} " in deploy


def test_a_trickling_receiver_is_cut_at_the_deadline_of_the_whole_try(
    alpha: Collection, settings
) -> None:  # type: ignore[no-untyped-def]
    # Given a receiver that answers one byte a second (each read well within any timeout)
    settings.WEBHOOK_TIMEOUT = 3
    settings.WEBHOOK_RETRY_BASE = 60
    answer = b"HTTP/1.1 204 No Content\r\nX-Padding: " + b"." * 40 + b"\r\n\r\n"
    trickler = RawServer(b"", trickle=answer, interval=1.0)
    allow_local(settings, trickler.port)
    pk = delivery_for(subscribe(alpha, trickler.url(), EventType.STAGE))
    try:
        began = time.monotonic()
        delivery = webhooks.attempt_delivery(pk)
        took = time.monotonic() - began
    finally:
        trickler.close()
    # Then the try ends at about WEBHOOK_TIMEOUT, a failed try that will be retried
    assert took < 3 + 1.5, f"the try took {took:.1f} s"
    assert delivery is not None and delivery.status == Delivery.PENDING
    assert delivery.last_error == "timed out after 3 s" and delivery.last_status_code is None
    assert 2900 <= delivery.last_duration_ms < 4500


def test_an_answer_whose_body_trickles_is_taken_at_its_status(alpha: Collection, settings) -> None:  # type: ignore[no-untyped-def]
    # The body is never read, so a receiver that answers 200 and then dawdles costs nothing
    settings.WEBHOOK_TIMEOUT = 3
    slow_body = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n", b"x" * 30, 1.0)
    allow_local(settings, slow_body.port)
    pk = delivery_for(subscribe(alpha, slow_body.url(), EventType.STAGE))
    try:
        began = time.monotonic()
        delivery = webhooks.attempt_delivery(pk)
        assert time.monotonic() - began < 2
    finally:
        slow_body.close()
    assert delivery is not None and delivery.status == Delivery.DELIVERED


def test_it_caps_the_subscriptions_of_a_collection(
    alpha: Collection, client: Client, settings
) -> None:  # type: ignore[no-untyped-def]
    from mintsite.models import ApiKey
    from tests.test_api import bearer, error_of

    settings.WEBHOOK_MAX_SUBSCRIPTIONS = 2
    _, key = ApiKey.issue(alpha, "studio site")
    body = {"url": "https://hooks.example/mint", "event_types": ["token.stage"]}

    def create() -> Any:
        url = "/api/collections/alpha/webhooks/"
        return client.post(url, body, content_type="application/json", **bearer(key))

    assert [create().status_code for _ in range(2)] == [201, 201]
    refused = create()
    assert refused.status_code == 400
    error = error_of(refused)
    assert error["code"] == "too_many_subscriptions"
    assert "already has 2 webhook subscriptions" in error["message"]
    assert WebhookSubscription.objects.count() == 2
    # nor in the admin
    client.force_login(manager("maria", alpha))
    page = client.post(
        "/admin/mintsite/webhooksubscription/add/",
        {"collection": alpha.pk, "url": "https://a.example/", "event_types": ["token.stage"]},
    )
    assert "already has 2 webhook subscriptions" in page.content.decode()
    assert WebhookSubscription.objects.count() == 2
    # deleting one makes room
    first = WebhookSubscription.objects.order_by("pk").first()
    assert first is not None
    client.delete(f"/api/collections/alpha/webhooks/{first.pk}/", **bearer(key))
    assert create().status_code == 201


def test_the_circuit_breaker_disables_an_endpoint_that_keeps_failing_until_a_manager_reenables_it(
    alpha: Collection, receiver, redis_url: str, client: Client, settings
) -> None:  # type: ignore[no-untyped-def]
    from mintsite.models import ApiKey
    from tests.test_api import bearer

    settings.WEBHOOK_RETRY_BASE = 0
    settings.WEBHOOK_BREAKER_FAILURES = 3
    settings.WEBHOOK_BREAKER_SECONDS = 1
    endpoint = receiver(500)
    subscription = subscribe(alpha, endpoint.url, EventType.STAGE)
    first, second = delivery_for(subscription), delivery_for(subscription)
    # Three failed tries at once are not yet sustained failure
    for pk in (first, second, first):
        webhooks.attempt_delivery(pk)
    subscription.refresh_from_db()
    assert subscription.disabled_at is None and subscription.failure_streak == 3
    # Failing on a second later, it is: the endpoint is disabled, and why is stored
    time.sleep(1.1)
    webhooks.attempt_delivery(second)
    subscription.refresh_from_db()
    assert subscription.state == "disabled" and subscription.disabled_at is not None
    assert subscription.disabled_reason.startswith("4 tries in a row failed since")
    assert subscription.disabled_reason.endswith("the last: the receiver answered HTTP 500")
    # Its pending deliveries are skipped, new ones recorded as skipped; nothing more is sent
    token = make_token(alpha, 1 + Token.objects.count(), Status.RENDERING)
    assert webhooks.create_deliveries(events.record([token.pk], Status.RENDERING)) == []
    third = subscription.deliveries.latest("pk").pk
    statuses = WebhookDelivery.objects.filter(pk__in=[first, second, third]).values_list(
        "status", flat=True
    )
    assert set(statuses) == {Delivery.SKIPPED}
    assert webhooks.attempt_delivery(first) is None
    assert len(endpoint.received) == 4
    # The key holder sees the state in the API, and cannot lift it
    _, key = ApiKey.issue(alpha, "studio site")
    url = f"/api/collections/alpha/webhooks/{subscription.pk}/"
    shown = client.get(url, **bearer(key)).json()
    assert shown["state"] == "disabled" and shown["disabled_reason"] == subscription.disabled_reason
    client.patch(
        url, {"disabled_at": None, "active": True}, content_type="application/json", **bearer(key)
    )
    subscription.refresh_from_db()
    assert subscription.disabled_at is not None
    # The manager sees why in the admin and re-enables it; the skipped deliveries go out
    client.force_login(manager("maria", alpha))
    listing = client.get("/admin/mintsite/webhooksubscription/?disabled=yes").content.decode()
    assert "4 tries in a row failed since" in listing
    endpoint.answers = [200]
    response = client.post(
        "/admin/mintsite/webhooksubscription/",
        {"action": "reenable", "_selected_action": [subscription.pk]},
        follow=True,
    )
    assert b"1 endpoint(s) re-enabled; 3 skipped deliveries queued" in response.content
    for pk in (first, second, third):
        deliver_webhook.fn(pk)
    statuses = WebhookDelivery.objects.filter(pk__in=[first, second, third]).values_list(
        "status", flat=True
    )
    assert set(statuses) == {Delivery.DELIVERED}
    subscription.refresh_from_db()
    assert subscription.state == "active" and subscription.failure_streak == 0
    assert client.get(url, **bearer(key)).json()["state"] == "active"


# --- Standard Webhooks, chosen per subscription (issue 20) -----------------------------------


def lowered(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@pytest.fixture
def webhook_worker(redis_url: str) -> Iterator[Callable[[Callable[[], bool]], None]]:
    """A real Dramatiq worker in this process, on the webhooks queue, run until a condition
    holds (the queue emptied before and after)."""
    broker = dramatiq.get_broker()
    broker.flush(WEBHOOK_QUEUE)

    def run(until: Callable[[], bool]) -> None:
        worker = Worker(broker, queues={WEBHOOK_QUEUE}, worker_threads=1, worker_timeout=100)
        worker.start()
        try:
            deadline = time.monotonic() + 60
            while not until():
                assert time.monotonic() < deadline, "the webhook worker did not finish in time"
                time.sleep(0.1)
        finally:
            worker.stop()

    yield run
    broker.flush(WEBHOOK_QUEUE)


@pytest.mark.django_db(transaction=True)
def test_a_standard_subscription_is_verified_by_the_standard_webhooks_library_through_the_worker(
    alpha: Collection, receiver, settings, webhook_worker
) -> None:  # type: ignore[no-untyped-def]
    # Given Stella's standard subscription, whose receiver fails once, and Mo's mint one
    settings.WEBHOOK_RETRY_BASE = 0  # the retry is due at once
    stella_endpoint, mo_endpoint = receiver(500, 200), receiver(200)
    stella = subscribe(alpha, stella_endpoint.url, EventType.STAGE, scheme=WebhookScheme.STANDARD)
    mo = subscribe(alpha, mo_endpoint.url, EventType.STAGE)
    token = make_token(alpha, 7, Status.RENDERING)

    # When a token enters a stage (the subscriber runs after the commit and queues the
    # deliveries) and the webhook worker serves its queue
    events.record([token.pk], Status.RENDERING, "attempt 0")
    delivery = stella.deliveries.get()
    webhook_worker(
        lambda: set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    )

    # Then both of Stella's tries pass the library's own verifier, with one webhook-id
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 2
    wh = standardwebhooks.Webhook(stella.secret)
    tries = [(lowered(headers), body) for headers, body in stella_endpoint.received]
    for headers, body in tries:
        event = wh.verify(body, headers)
        assert event["id"] == delivery.event_id and event["type"] == "token.stage"
        assert event["data"]["event"]["status"] == "RENDERING"
        assert "mint-signature" not in headers
    assert [h["webhook-id"] for h, _ in tries] == [f"msg_{delivery.pk}"] * 2
    assert [h["mint-delivery-attempt"] for h, _ in tries] == ["1", "2"]
    assert int(tries[1][0]["webhook-timestamp"]) >= int(tries[0][0]["webhook-timestamp"])

    # and what an attacker might try fails the library's verification
    headers, body = tries[1]
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        wh.verify(body.replace(b"RENDERING", b"PUBLISHED"), headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        standardwebhooks.Webhook(new_webhook_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        wh.verify(body, {**headers, "webhook-id": f"msg_{delivery.pk + 1}"})
    with pytest.raises(WebhookVerificationError, match="too old"):
        wh.verify(body, {**headers, "webhook-timestamp": str(int(time.time()) - 600)})
    ten_minutes_ago = timezone.now() - timedelta(minutes=10)
    captured = webhooks.standard_signature_headers(
        headers["webhook-id"], body, stella.secret, at=ten_minutes_ago
    )
    with pytest.raises(WebhookVerificationError, match="too old"):
        wh.verify(body, captured)  # a genuine delivery replayed by someone ten minutes later

    # A replay is the same delivery: the same webhook-id, a fresh signature
    webhooks.replay(delivery.pk)
    webhook_worker(lambda: WebhookDelivery.objects.get(pk=delivery.pk).attempts == 3)
    replayed_headers, replayed_body = stella_endpoint.received[2]
    assert wh.verify(replayed_body, replayed_headers)["id"] == delivery.event_id
    assert lowered(replayed_headers)["webhook-id"] == f"msg_{delivery.pk}"

    # Mo's mint subscription is signed as before, with no Standard Webhooks header
    ((mo_headers, mo_body),) = mo_endpoint.received
    verify(mo_body, mo_headers["Mint-Signature"], mo.secret)
    assert not {"webhook-id", "webhook-timestamp", "webhook-signature"} & set(lowered(mo_headers))
    assert mo_body == body  # the same document, signed another way


def test_it_is_verified_by_the_documented_standard_webhooks_receiver(
    alpha: Collection, tmp_path: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    docs = (Path(__file__).parent.parent / "docs" / "webhooks.md").read_text()
    (source,) = re.findall(r'```python\n("""standard_receiver\.py.*?)```', docs, flags=re.S)
    (tmp_path / "standard_receiver.py").write_text(source)
    port = free_port()
    allow_local(settings, port)
    url = f"http://127.0.0.1:{port}/hooks"
    subscription = subscribe(alpha, url, EventType.STAGE, scheme=WebhookScheme.STANDARD)
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "standard_receiver.py"), str(port)],
        env={**os.environ, "MINT_WEBHOOK_SECRET": subscription.secret},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the example receiver did not start"
                time.sleep(0.05)
        pk = delivery_for(subscription)
        delivery = webhooks.attempt_delivery(pk)
        assert delivery is not None and delivery.status == Delivery.DELIVERED
        assert delivery.last_status_code == 204

        body = bytes(delivery.payload)
        fresh = webhooks.standard_signature_headers(f"msg_{pk}", body, subscription.secret)
        tampered = httpx.post(url, content=body + b" ", headers=fresh)
        assert (tampered.status_code, tampered.text) == (400, "No matching signature found")
        old = webhooks.standard_signature_headers(
            f"msg_{pk}", body, subscription.secret, at=timezone.now() - timedelta(hours=1)
        )
        stale = httpx.post(url, content=body, headers=old)
        assert (stale.status_code, stale.text) == (400, "Message timestamp too old")
        unsigned = httpx.post(url, content=body, headers={"Mint-Signature": "t=1,v1=abc"})
        assert (unsigned.status_code, unsigned.text) == (400, "Missing required headers")
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert out.splitlines() == [f"msg_{pk} token.stage RENDERING"]


def test_a_new_secret_is_the_base64_key_the_standard_webhooks_libraries_decode() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)  # padded, + and /
    assert len(key) == 32
    assert len({new_webhook_secret() for _ in range(20)}) == 20


def test_the_scheme_is_chosen_when_subscribing_through_the_api_and_kept(
    alpha: Collection, client: Client
) -> None:
    from mintsite.models import ApiKey
    from tests.test_api import bearer, error_of

    _, key = ApiKey.issue(alpha, "studio site")
    url = "/api/collections/alpha/webhooks/"
    body = {"url": "https://hooks.example/mint", "event_types": ["token.stage"]}

    def create(**fields: Any) -> Any:
        return client.post(url, {**body, **fields}, content_type="application/json", **bearer(key))

    # Without a scheme a subscription is a mint one, as before
    plain = create()
    assert plain.status_code == 201 and plain.json()["scheme"] == "mint"
    # A standard one says so, and its secret is shown once, in the form the libraries take
    created = create(scheme="standard")
    assert created.status_code == 201
    shown = created.json()
    assert shown["scheme"] == "standard"
    subscription = WebhookSubscription.objects.get(pk=shown["id"])
    assert subscription.scheme == WebhookScheme.STANDARD and shown["secret"] == subscription.secret
    standardwebhooks.Webhook(shown["secret"])  # accepted as is
    detail = f"{url}{subscription.pk}/"
    read = client.get(detail, **bearer(key)).json()
    assert read["scheme"] == "standard" and "secret" not in read
    assert [s["scheme"] for s in client.get(url, **bearer(key)).json()["results"]] == [
        "mint",
        "standard",
    ]
    # An unknown scheme is refused
    unknown = create(scheme="svix")
    assert unknown.status_code == 400 and "scheme" in error_of(unknown)["fields"]

    # It cannot be changed afterwards: the receiver verifies with it
    changed = client.patch(
        detail, {"scheme": "mint"}, content_type="application/json", **bearer(key)
    )
    assert changed.status_code == 400
    assert "cannot be changed" in error_of(changed)["fields"]["scheme"][0]
    # A PUT without it, or repeating it, keeps it
    replaced = client.put(
        detail,
        {"url": "https://hooks.example/other", "event_types": ["token.failed"]},
        content_type="application/json",
        **bearer(key),
    )
    assert replaced.status_code == 200 and replaced.json()["scheme"] == "standard"
    same = client.patch(
        detail, {"scheme": "standard"}, content_type="application/json", **bearer(key)
    )
    assert same.status_code == 200
    subscription.refresh_from_db()
    assert subscription.scheme == WebhookScheme.STANDARD
    assert subscription.url == "https://hooks.example/other"

    # The schema documents it
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    field = schema["components"]["schemas"]["WebhookSubscription"]["properties"]["scheme"]
    enum = schema["components"]["schemas"][field["allOf"][0]["$ref"].rsplit("/", 1)[1]]["enum"]
    assert enum == ["mint", "standard"]


def test_a_manager_chooses_the_scheme_in_the_admin_and_sees_it(
    alpha: Collection, client: Client
) -> None:
    subscribe(alpha, "https://mo.example/hooks", EventType.STAGE)  # a mint one, made before
    client.force_login(manager("maria", alpha))
    form = client.get("/admin/mintsite/webhooksubscription/add/").content.decode()
    assert 'name="scheme"' in form and "Standard Webhooks" in form
    response = client.post(
        "/admin/mintsite/webhooksubscription/add/",
        {
            "collection": alpha.pk,
            "url": "https://studio.example/hooks",
            "scheme": "standard",
            "event_types": ["token.published"],
            "active": "on",
        },
        follow=True,
    )
    subscription = WebhookSubscription.objects.get(url="https://studio.example/hooks")
    assert subscription.scheme == WebhookScheme.STANDARD
    assert f"<code>{subscription.secret}</code>" in response.content.decode()
    # The list shows each one's scheme, and filters by it
    listing = client.get("/admin/mintsite/webhooksubscription/").content.decode()
    assert "Standard Webhooks (webhook-id" in listing and "Mint-Signature (t=" in listing
    filtered = client.get("/admin/mintsite/webhooksubscription/?scheme__exact=standard")
    assert "studio.example" in filtered.content.decode()
    assert "mo.example" not in filtered.content.decode()
    # On its page the scheme is shown, not editable; a post cannot change it
    page = client.get(f"/admin/mintsite/webhooksubscription/{subscription.pk}/change/")
    assert 'name="scheme"' not in page.content.decode()
    assert "Standard Webhooks (webhook-id" in page.content.decode()
    saved = client.post(
        f"/admin/mintsite/webhooksubscription/{subscription.pk}/change/",
        {
            "url": "https://studio.example/hooks",
            "scheme": "mint",
            "event_types": ["token.published"],
            "description": "the studio's site",
            "active": "on",
        },
    )
    assert saved.status_code == 302
    subscription.refresh_from_db()
    assert subscription.description == "the studio's site"
    assert subscription.scheme == WebhookScheme.STANDARD
