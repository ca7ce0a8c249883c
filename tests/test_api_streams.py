"""Streams and long polls as a hostile client and an operator see them (issue 15, item 4).

A client may hold only API_MAX_STREAMS_PER_CLIENT open at once (each holds a server thread),
and a waiting request reads the database only when told that its token changed (Redis pub/sub
from whichever process changed it), not every half second. Against a live server: real
threads, real HTTP, the project's Redis.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from generation import events
from generation.models import Collection, Token
from mintsite.api.holds import process_holds
from mintsite.cache import shared_cache
from mintsite.models import ApiKey
from tests.conftest import database_url
from tests.test_api import make_collection, make_token

Status = Token.Status
CAP = 2
ANONYMOUS = "streams:addr:127.0.0.1"  # whose places the live server's anonymous clients take


def held(key: str = ANONYMOUS) -> int:
    counter = shared_cache()
    assert counter is not None
    return counter.places_held(key)


def until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def watched(settings, transactional_db: None) -> Iterator[Collection]:  # type: ignore[no-untyped-def]
    # Given a cap of 2, no rate limit in the way, and nothing re-read on a timer: only a
    # notice of a change (or its absence) decides when a waiting request answers
    cache.clear()
    settings.API_MAX_STREAMS_PER_CLIENT = CAP
    settings.API_ANON_RATE = settings.API_KEY_RATE = None
    settings.API_RECHECK_SECONDS = 60
    settings.API_HEARTBEAT_SECONDS = 0.2
    collection = make_collection("watched", 1)
    make_token(collection, 1, Status.RENDERING)
    make_token(collection, 2, Status.RENDERING)
    connections.close_all()  # the server's threads open their own
    yield collection
    # The server finds a closed stream's client gone at its next heartbeat: wait for each
    # thread to let go (and close its database connection) before the database is dropped.
    keys = [ANONYMOUS, *(f"streams:key:{k.prefix}" for k in ApiKey.objects.all())]
    until(lambda: all(held(key) == 0 for key in keys))
    time.sleep(0.5)


@contextmanager
def stream(base: str, token_id: int, headers: dict[str, str] | None = None) -> Iterator[Any]:
    """An SSE stream held open, once its first event has come (so its place is taken)."""
    with (
        httpx.Client(base_url=base, headers=headers or {}, timeout=30) as http,
        http.stream("GET", f"/api/collections/watched/tokens/{token_id}/stream/") as response,
    ):
        if response.status_code == 200:
            lines = response.iter_lines()
            while next(lines) != "event: token":
                pass
        else:
            response.read()
        yield response


@contextmanager
def long_poll(base: str, token_id: int) -> Iterator[dict[str, Any]]:
    """A long poll waiting on a RENDERING token, in a thread; its answer lands in the dict."""
    answer: dict[str, Any] = {}
    before = held()

    def wait() -> None:
        url = f"{base}/api/collections/watched/tokens/{token_id}/?wait=30&since=RENDERING"
        answer["response"] = httpx.get(url, timeout=60)
        answer["at"] = time.monotonic()

    thread = threading.Thread(target=wait)
    thread.start()
    until(lambda: held() > before or "response" in answer)
    try:
        yield answer
    finally:
        thread.join(timeout=60)


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "too_many_streams"
    assert "API_MAX_STREAMS_PER_CLIENT" in error["message"] and f"holds {CAP}" in error["message"]
    assert 1 <= int(response.headers["Retry-After"]) == error["retry_after"] <= 60


@pytest.mark.parametrize("kind", ["stream", "long poll"])
def test_a_client_holds_at_most_the_cap_of_streams_and_long_polls(
    live_server, watched: Collection, kind: str
) -> None:  # type: ignore[no-untyped-def]
    base = live_server.url
    _, key = ApiKey.issue(watched, "another client")
    with ExitStack() as held_open:
        # When one client opens as many as it may on token 1, each holding a server thread
        for _ in range(CAP):
            if kind == "stream":
                assert held_open.enter_context(stream(base, 1)).status_code == 200
            else:
                held_open.enter_context(long_poll(base, 1))

        # Then one more, stream or long poll, on any token, is refused at once in JSON
        with stream(base, 2) as extra:
            assert_refused(extra)
        url = f"{base}/api/collections/watched/tokens/2/?wait=30&since=RENDERING"
        assert_refused(httpx.get(url, timeout=60))
        # (a plain read is not a hold: it still answers)
        assert httpx.get(f"{base}/api/collections/watched/tokens/2/").status_code == 200

        # and another client (an API key) is not affected
        with stream(base, 2, {"Authorization": f"Bearer {key}"}) as other:
            assert other.status_code == 200

        # When token 1 reaches a final status, the streams end and the long polls answer
        Token.objects.filter(pk=Token.objects.get(token_id=1).pk).update(status=Status.FAILED)
        events.record([Token.objects.get(token_id=1).pk], Status.FAILED, "render crashed")
        until(lambda: held() == 0)

    # Then the client can open again
    with stream(base, 2) as again:
        assert again.status_code == 200
        assert held() == 1


def test_a_web_process_keeps_threads_for_polls_however_many_clients_stream(
    live_server, watched: Collection, settings
) -> None:  # type: ignore[no-untyped-def]
    # Given a web process that may give 2 more of its threads to streams (streams of earlier
    # tests that nothing closed are let go when collected), and two clients
    gc.collect()
    settings.API_MAX_STREAMS_PER_PROCESS = process_holds.count + 2
    base = live_server.url
    _, key = ApiKey.issue(watched, "a second client")
    second = {"Authorization": f"Bearer {key}"}
    with stream(base, 1) as first, stream(base, 2) as again:
        assert first.status_code == again.status_code == 200
        # When the second client, within its own cap, asks for a stream
        with stream(base, 1, second) as refused:
            pass
        # Then the server says it is busy, and still answers the client's polls at once
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert error["code"] == "streams_busy"
        assert "API_MAX_STREAMS_PER_PROCESS" in error["message"]
        assert int(refused.headers["Retry-After"]) == error["retry_after"] > 0
        began = time.monotonic()
        url = f"{base}/api/collections/watched/tokens/1/"
        assert httpx.get(url, headers=second).status_code == 200
        assert time.monotonic() - began < 5
    until(lambda: held() == 0)
    with stream(base, 1, second) as later:
        assert later.status_code == 200


def test_a_client_that_goes_away_gives_its_place_back(live_server, watched: Collection) -> None:  # type: ignore[no-untyped-def]
    with stream(live_server.url, 1):
        assert held() == 1
    # the server finds the client gone at its next write (a heartbeat) and lets go
    until(lambda: held() == 0)


def test_a_place_left_by_a_dead_process_frees_itself() -> None:
    # A web process killed mid-stream never gives its places back: their leases end them
    counter = shared_cache()
    assert counter is not None
    key = "streams:addr:192.0.2.7"
    assert counter.take_place(key, "killed", limit=1, lease=1.0) == (True, 1)
    assert counter.take_place(key, "next", limit=1, lease=1.0)[0] is False
    time.sleep(1.2)
    assert counter.take_place(key, "next", limit=1, lease=1.0)[0] is True


def test_a_long_poll_answers_as_soon_as_another_process_changes_the_token(
    live_server, watched: Collection
) -> None:  # type: ignore[no-untyped-def]
    pk = Token.objects.get(token_id=1).pk
    began = time.monotonic()
    with long_poll(live_server.url, 1) as answer:
        # When a separate process (as a render worker would) moves the token and commits
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c",
             "from django.db import transaction\n"
             "from generation import events\n"
             "from generation.models import Token\n"
             "with transaction.atomic():\n"
             f"    Token.objects.filter(pk={pk}).update(status='RENDERED')\n"
             f"    events.record([{pk}], 'RENDERED', 'from the render worker')\n"],
            env={**os.environ, "DATABASE_URL": database_url()},
            cwd=django_settings.BASE_DIR, check=True, timeout=120,
        )  # fmt: skip
        changed_at = time.monotonic()
    # Then the long poll answers with it at once, not at its 30 s wait or the 60 s re-check
    response = answer["response"]
    assert response.status_code == 200
    assert response.json()["status"] == "RENDERED"
    assert response.json()["events"][-1]["detail"] == "from the render worker"
    assert answer["at"] - changed_at < 2.0
    assert answer["at"] - began < 30


def test_an_idle_stream_reads_nothing_while_it_waits(client: Client, db: None, settings) -> None:  # type: ignore[no-untyped-def]
    # Given the default re-check and a heartbeat every 0.2 s
    settings.API_HEARTBEAT_SECONDS = 0.2
    make_token(make_collection("quiet", 1), 1, Status.RENDERING)
    response = client.get("/api/collections/quiet/tokens/1/stream/")
    try:
        chunks = iter(response.streaming_content)
        assert b"event: token" in next(chunks) + next(chunks)
        # (the first stream of a process starts its subscriber, which wakes every waiting
        # request once when subscribed, in case it missed a change: let that pass)
        assert [next(chunks) for _ in range(3)] == [b": keep-alive\n\n"] * 3

        # When nothing happens to the token for 1.2 s
        with CaptureQueriesContext(connection) as queries:
            began = time.monotonic()
            beats = [next(chunks) for _ in range(6)]
        # Then the stream sent its heartbeats and asked the database nothing
        assert beats == [b": keep-alive\n\n"] * 6 and time.monotonic() - began >= 1.0
        assert len(queries) == 0
    finally:
        response.close()
