"""Sending again the messages stuck tokens wait for (generation/redrive.py), on the real broker.

No worker runs here: each test reads what the broker holds after ``redrive`` (on Redis, and on
RabbitMQ with ``make test-rabbitmq``). The listener's sweep and a token carried to FINAL by it,
with real workers: tests/test_faults.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from io import StringIO
from pathlib import Path

import dramatiq
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from generation.models import Token, TokenEvent
from generation.redrive import LOST_RERENDER, broker_messages, redrive
from generation.tasks import render_token
from tests.test_pipeline import make_token

pytestmark = [pytest.mark.django_db, pytest.mark.rabbitmq]
Status = Token.Status
AGE = 600.0  # how long the stuck tokens here have been untouched


@pytest.fixture(autouse=True)
def empty_queues() -> None:
    # this process's namespace; no worker consumes it during these tests
    dramatiq.get_broker().flush_all()


def queued() -> Counter[tuple[str, int]]:
    """(actor, first argument) of every message the broker holds."""
    return Counter((m["actor_name"], m["args"][0]) for m in broker_messages())


def at(token: Token, status: str, *, age: float = AGE, **fields: object) -> Token:
    """The token moved to ``status``, last touched ``age`` seconds ago."""
    Token.objects.filter(pk=token.pk).update(
        status=status, updated_at=timezone.now() - timedelta(seconds=age), **fields
    )
    token.refresh_from_db()
    return token


def test_reading_what_the_broker_holds_takes_nothing_from_it() -> None:
    # Given renders waiting and one delayed (on RabbitMQ reading takes each message and gives
    # it back: foundation/broker_contents.py)
    for pk in (10**9, 10**9 + 1, 10**9 + 2):
        render_token.send(pk)
    render_token.send_with_options(args=(10**9 + 3,), delay=60_000)
    # When they are read twice, then both readings find all four, in the same order
    first = [m["args"][0] for m in broker_messages()]
    assert sorted(first) == [10**9, 10**9 + 1, 10**9 + 2, 10**9 + 3]
    assert [m["args"][0] for m in broker_messages()] == first


def test_each_stuck_token_gets_the_message_its_next_stage_waits_for(
    reference_models: Path,
) -> None:
    seeded = at(make_token(reference_models, threshold=-1.0, token_id=1), Status.SEED_COMMITTED)
    rendered = at(make_token(reference_models, threshold=-1.0, token_id=2), Status.RENDERED)
    pinned = [
        at(make_token(reference_models, threshold=-1.0, token_id=i), Status.PINNED) for i in (3, 4)
    ]
    lapsed = at(
        make_token(reference_models, threshold=-1.0, token_id=5),
        Status.RENDERING,
        render_lease_owner="host:1:gone",
        render_lease_expires=timezone.now() - timedelta(seconds=AGE),
    )
    result = redrive(older_than=60)
    assert sorted(result.render) == sorted([seeded.pk, lapsed.pk])
    assert result.pin == [rendered.pk]
    # one publishing run for a collection, however many of its tokens wait
    assert result.publish == [pinned[0].collection_id]
    assert queued() == Counter(
        {
            ("render_token", seeded.pk): 1,
            ("render_token", lapsed.pk): 1,
            ("pin_token", rendered.pk): 1,
            ("publish_pending", pinned[0].collection_id): 1,
        }
    )


def test_a_token_whose_message_is_in_the_broker_is_not_sent_a_second(
    reference_models: Path,
) -> None:
    # Given a backlog: a token untouched for long because its render waits its turn
    waiting = at(make_token(reference_models, threshold=-1.0, token_id=1), Status.SEED_COMMITTED)
    render_token.send(waiting.pk)
    delayed = at(make_token(reference_models, threshold=-1.0, token_id=2), Status.SEED_COMMITTED)
    render_token.send_with_options(args=(delayed.pk,), delay=60_000)  # a retry's backoff
    # When the sweep runs, then it sends nothing: each has its one message
    assert not redrive(older_than=60)
    assert queued() == Counter({("render_token", waiting.pk): 1, ("render_token", delayed.pk): 1})


def test_it_leaves_fresh_tokens_live_leases_and_paused_collections_alone(
    reference_models: Path,
) -> None:
    at(make_token(reference_models, threshold=-1.0, token_id=1), Status.RENDERED, age=5)
    at(
        make_token(reference_models, threshold=-1.0, token_id=2),
        Status.RENDERING,
        render_lease_owner="host:1:alive",
        render_lease_expires=timezone.now() + timedelta(seconds=AGE),
    )
    paused = make_token(reference_models, threshold=-1.0, token_id=1, slug="paused", paused=True)
    at(paused, Status.SEED_COMMITTED)
    assert not redrive(older_than=60)
    assert queued() == Counter()


def test_a_lost_rerender_goes_back_to_review_saying_so(reference_models: Path) -> None:
    # Given a manager's re-render (attempts past the collection's max) whose message was lost
    token = make_token(reference_models, threshold=-1.0, token_id=1)
    at(token, Status.RENDERING, attempt=3, render_lease_owner="host:1:gone")
    result = redrive(older_than=60)
    token.refresh_from_db()
    assert result.review == [token.pk] and not result.render
    assert token.status == Status.NEEDS_REVIEW and token.failure_reason == LOST_RERENDER
    assert TokenEvent.objects.filter(token=token, status=Status.NEEDS_REVIEW).count() == 1
    assert queued() == Counter()


def test_the_command_says_what_it_would_send_and_sends_it(reference_models: Path) -> None:
    token = at(make_token(reference_models, threshold=-1.0, token_id=1), Status.RENDERED)
    out = StringIO()
    call_command("redrive", "--older-than", "60", "--dry-run", stdout=out)
    assert f"would send: render none; pin pk={token.pk};" in out.getvalue()
    assert queued() == Counter()
    call_command("redrive", "--older-than", "60", stdout=out)
    assert f"sent: render none; pin pk={token.pk};" in out.getvalue()
    assert queued() == Counter({("pin_token", token.pk): 1})
    with pytest.raises(CommandError, match=r"--older-than must be 0 or more, not -1\.0"):
        call_command("redrive", "--older-than", "-1")
