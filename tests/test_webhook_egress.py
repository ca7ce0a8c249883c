"""Webhook egress (issue 15, item 2): an API-key holder cannot point a subscription into the
workers' network, nor read an internal service's answer back through the API.

Persona: Mallory holds an API key of the collection "alpha" and wants what the io worker can
reach (the chain's JSON-RPC, Kubo's RPC, the cloud metadata service) — the servers here on
127.0.0.1 stand for those internal services.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client

from generation import events
from generation.models import Collection, Token
from mintsite import egress, webhooks
from mintsite.models import ApiKey, WebhookDelivery, WebhookSubscription
from tests.test_api import bearer, error_of, make_collection, make_token
from tests.test_webhooks import allow_local, delivery_for, manager
from tests.webhook_servers import RawServer

pytestmark = pytest.mark.django_db
Delivery = WebhookDelivery.Status
WEBHOOKS = "/api/collections/alpha/webhooks/"
SECRET = b'{"jsonrpc":"2.0","id":1,"result":"0xSECRET-FROM-THE-INTERNAL-RPC"}'


@pytest.fixture
def alpha() -> Collection:
    return make_collection("alpha", 1)


@pytest.fixture
def mallory(alpha: Collection) -> dict[str, str]:
    _, key = ApiKey.issue(alpha, "mallory's bot")
    return bearer(key)


@pytest.fixture
def internal() -> Iterator[RawServer]:
    """An internal JSON-RPC-like service that answers any POST with a secret."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    server = RawServer(head + f"Content-Length: {len(SECRET)}\r\n\r\n".encode() + SECRET)
    yield server
    server.close()


def subscribe(client: Client, auth: dict[str, str], url: str) -> Any:
    body = {"url": url, "event_types": ["token.stage"]}
    return client.post(WEBHOOKS, body, content_type="application/json", **auth)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/hooks", "127.0.0.1 is a loopback address"),
        ("http://[::1]/hooks", "::1 is a loopback address"),
        ("http://0.0.0.0/hooks", "0.0.0.0 is a unspecified address"),
        ("http://[::]/hooks", ":: is a unspecified address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[fe80::1]/hooks", "link-local"),
        ("http://10.1.2.3/hooks", "10.1.2.3 is a private address"),
        ("http://192.168.1.10/hooks", "private"),
        ("http://172.16.0.1/hooks", "private"),
        ("http://100.64.0.1/hooks", "private"),  # shared (carrier-grade NAT) space
        ("http://[fd00::1]/hooks", "private"),
        ("http://224.0.0.1/hooks", "multicast"),
        ("http://240.0.0.1/hooks", "reserved"),
        ("http://localhost/hooks", "localhost resolves to a loopback address"),
        ("http://[::ffff:127.0.0.1]/hooks", "IPv4-mapped IPv6"),
        ("http://[::ffff:169.254.169.254]/hooks", "IPv4-mapped IPv6"),
        ("http://[::127.0.0.1]/hooks", "IPv4-compatible IPv6"),
        ("http://[2002:7f00:1::]/hooks", "IPv6 form of a non-public IPv4 (loopback)"),  # 6to4
        ("http://[64:ff9b::a9fe:a9fe]/hooks", "IPv6 form of a non-public IPv4 (link-local)"),
        ("http://user:secret@hooks.example/", "must not carry credentials"),
        ("https://hooks.example:8545/", "port 8545 is not allowed (allowed: 80, 443"),
        ("http://127.0.0.1:5001/api/v0/shutdown", "port 5001 is not allowed"),
        # a label over 63 characters can never be looked up (the fuzzer found a 500 here)
        (f"https://{'a' * 64}.example/hooks", "not a valid DNS name"),
    ],
)
def test_it_refuses_a_subscription_to_a_destination_inside_the_network(
    client: Client, mallory: dict[str, str], url: str, why: str
) -> None:
    # When Mallory subscribes an internal address (or credentials, or an odd port)
    response = subscribe(client, mallory, url)
    # Then the API answers 400 naming what is wrong, and nothing is stored
    assert response.status_code == 400, response.content
    assert why in " ".join(error_of(response)["fields"]["url"])
    assert not WebhookSubscription.objects.exists()


def test_a_public_destination_is_accepted_and_a_name_that_does_not_resolve_yet_too(
    client: Client, mallory: dict[str, str]
) -> None:
    # each delivery resolves the name again and checks the address it connects to
    assert subscribe(client, mallory, "https://hooks.example/mint").status_code == 201
    delivery = webhooks.attempt_delivery(delivery_for(WebhookSubscription.objects.get()))
    assert delivery is not None and delivery.status == Delivery.PENDING
    assert delivery.last_error == "could not resolve the receiver's name"
    assert subscribe(client, mallory, "https://93.184.215.14/hooks").status_code == 201


def test_a_subscription_cannot_be_moved_inside_the_network_later(
    client: Client, mallory: dict[str, str]
) -> None:
    created = subscribe(client, mallory, "https://hooks.example/mint").json()
    url = f"{WEBHOOKS}{created['id']}/"
    for body in ({"url": "http://127.0.0.1:8545/"}, {"url": "http://169.254.169.254/"}):
        moved = client.patch(url, body, content_type="application/json", **mallory)
        assert moved.status_code == 400 and "url" in error_of(moved)["fields"]
    assert WebhookSubscription.objects.get().url == "https://hooks.example/mint"


def test_the_admin_form_refuses_an_internal_destination(alpha: Collection, client: Client) -> None:
    client.force_login(manager("maria", alpha))
    page = client.post(
        "/admin/mintsite/webhooksubscription/add/",
        {"collection": alpha.pk, "url": "http://169.254.169.254/", "event_types": ["token.stage"]},
    )
    assert page.status_code == 200  # the form again, with the reason
    assert "169.254.169.254 is a link-local address" in page.content.decode()
    assert not WebhookSubscription.objects.exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_destination_that_passed_at_subscription_is_refused_when_the_delivery_connects(
    client: Client, mallory: dict[str, str], internal: RawServer, settings, host: str
) -> None:  # type: ignore[no-untyped-def]
    # Given a subscription that passed its check (here because private destinations were
    # allowed then; with DNS rebinding, because the name resolved to a public address then)
    allow_local(settings, internal.port)
    assert subscribe(client, mallory, internal.url(host)).status_code == 201
    # When the name points inside the network by the time the delivery connects
    settings.WEBHOOK_ALLOW_PRIVATE = False
    settings.WEBHOOK_RETRY_BASE = 60
    delivery = webhooks.attempt_delivery(delivery_for(WebhookSubscription.objects.get()))
    # Then nothing reached the internal service; the try failed with the reason, and the
    # delivery waits for its next try
    assert internal.requests == []
    assert delivery is not None and delivery.status == Delivery.PENDING
    assert delivery.attempts == 1 and delivery.next_attempt_at is not None
    refused = "127.0.0.1 is a" if host == "127.0.0.1" else "localhost resolves to a"
    assert delivery.last_error.startswith(f"refused: {refused} loopback address")


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("localhost", "localhost resolves to a loopback address"),
        ("::ffff:127.0.0.1", "IPv4-mapped IPv6"),
        ("2130706433", "2130706433 resolves to a loopback address"),  # inet_aton's decimal form
        ("0.0.0.0", "unspecified"),  # Linux connects 0.0.0.0 to this host
    ],
)
def test_the_connection_is_checked_on_the_address_it_is_made_to(
    internal: RawServer, host: str, why: str
) -> None:
    # The backend resolves the name itself and checks the very addresses it connects to
    policy = egress.Policy(allow_private=False, ports=frozenset({internal.port}))
    backend = egress.GuardedBackend(policy, deadline=time.monotonic() + 5)
    with pytest.raises(egress.EgressRefused, match=why):
        backend.connect_tcp(host, internal.port)
    with pytest.raises(egress.EgressRefused, match="port 80 is not allowed"):
        backend.connect_tcp("hooks.example", 80)
    # allowed (a private deployment), it connects to the address it checked
    allowed = egress.GuardedBackend(
        egress.Policy(allow_private=True, ports=frozenset({internal.port})),
        deadline=time.monotonic() + 5,
    )
    stream = allowed.connect_tcp("localhost", internal.port)
    assert stream.get_extra_info("server_addr") == ("127.0.0.1", internal.port)
    stream.close()


def test_the_api_returns_a_deliverys_status_and_timing_never_the_receivers_answer(
    client: Client, mallory: dict[str, str], internal: RawServer, settings
) -> None:  # type: ignore[no-untyped-def]
    # Given a deployment that allows private destinations, and a key holder who subscribed the
    # internal service (or a receiver whose answer should stay its own)
    allow_local(settings, internal.port)
    garbled = RawServer(b"HTTP/1.1 " + SECRET + b"\r\n\r\n")  # not HTTP: h11 quotes it
    allow_local(settings, garbled.port)
    try:
        for url in (internal.url(), garbled.url()):
            assert subscribe(client, mallory, url).status_code == 201
        first = WebhookSubscription.objects.order_by("pk").first()
        assert first is not None
        token = make_token(first.collection, 1, Token.Status.RENDERING)
        for pk in webhooks.create_deliveries(events.record([token.pk], token.status)):
            webhooks.attempt_delivery(pk)
        # When the key holder reads the deliveries
        pages = [
            client.get(f"{WEBHOOKS}{s.pk}/deliveries/", **mallory)
            for s in WebhookSubscription.objects.order_by("pk")
        ]
    finally:
        garbled.close()
    # Then they see the status code and timing, and why a try failed, in our words only
    assert all(page.status_code == 200 for page in pages)
    assert all(b"SECRET" not in page.content for page in pages)
    (answered,), (broken,) = (page.json()["results"] for page in pages)
    assert answered["status"] == "delivered" and answered["last_status_code"] == 200
    assert isinstance(answered["last_duration_ms"], int) and "last_response" not in answered
    assert broken["last_status_code"] is None
    assert broken["last_error"] == "the receiver's answer was not valid HTTP"
    # nor does the admin show it
    client.force_login(manager("maria", first.collection))
    for delivery in WebhookDelivery.objects.all():
        page = client.get(f"/admin/mintsite/webhookdelivery/{delivery.pk}/change/")
        assert page.status_code == 200 and b"SECRET" not in page.content


def test_https_is_verified_against_the_urls_name_while_connecting_to_the_checked_address() -> None:
    # A TLS receiver with a certificate for "localhost" (self-signed, made for this test only:
    # tests/data/localhost-tls.*), trusted by the client of this test
    data = Path(__file__).parent / "data"
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(data / "localhost-tls.pem", data / "localhost-tls.key")

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    server.socket = server_side.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    trusting = ssl.create_default_context(cafile=str(data / "localhost-tls.pem"))
    policy = egress.Policy(allow_private=True, ports=frozenset({port}))
    try:
        # the name resolves to 127.0.0.1, which is connected to; the certificate matches the name
        with egress.client(5, policy, trusting) as client:
            assert client.post(f"https://localhost:{port}/", content=b"{}").status_code == 204
        # the same server by address: the certificate does not name it, so no delivery
        with (
            egress.client(5, policy, trusting) as client,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            client.post(f"https://127.0.0.1:{port}/", content=b"{}")
    finally:
        server.shutdown()
        server.server_close()
