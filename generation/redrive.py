"""Sending again the message a stuck token waits for.

Each stage commits its result, then sends the next stage's message. A process that dies
between the two, or a broker that loses a message (Redis restarted without its append-only
file, a queue emptied by hand), leaves a token waiting for a message that never comes. A
redelivered message mends the first case on its own (generation/tasks.py hands over again);
``redrive`` mends the rest. It takes the tokens

- in a status a message moves on (the stage table, generation/stages.py): SEED_COMMITTED
  (render), RENDERING with its lease lapsed (render, which takes it over), RENDERED (pin),
  PINNED or a stale PUBLISHING claim (publishing of the collection);
- untouched for ``older_than`` seconds, of a collection that is not paused;
- with no message for them anywhere in the broker: waiting, delayed, or taken by a worker
  (on Redis, Dramatiq keeps every unacknowledged message in ``<ns>:<queue>.msgs`` and
  ``.DQ.msgs``). RabbitMQ lets no one read a message a live worker holds (prefetched, running,
  or delayed in its memory): those are not seen, and a token untouched for ``older_than``
  whose message a worker holds gets a second one, which its stage ignores
  (foundation/broker_contents.py says why no other reading does better);

and sends that message. A backlog is left alone (its tokens have their messages queued), so a
sweep during a drop of 10,000 mints re-sends nothing that is merely waiting its turn. Every
stage takes only tokens at its own status, so a message sent twice does nothing twice.

The listener daemon runs it every ``SWEEP_SECONDS``; ``manage.py redrive`` runs it once.
A manager's re-render whose message was lost (RENDERING, lease lapsed, the collection's
attempts used up: ``render_token`` would not render past ``max_attempts``) goes back to
NEEDS_REVIEW, saying so, for the manager to ask again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from foundation import broker_contents
from generation import events, stages
from generation.models import Token
from generation.pipeline import lease_free

log = logging.getLogger(__name__)
Status = Token.Status
LOST_RERENDER = "the re-render's message was lost (its worker or the broker); ask again"
READ_TIMEOUT = 30.0  # seconds, each broker round trip (a 10,000-message backlog is many)


@dataclass
class Redriven:
    """Token pks sent again, by the actor sent; collections whose publishing was sent again."""

    render: list[int] = field(default_factory=list)
    pin: list[int] = field(default_factory=list)
    publish: list[int] = field(default_factory=list)  # collection pks
    review: list[int] = field(default_factory=list)  # lost re-renders, back to NEEDS_REVIEW

    def __bool__(self) -> bool:
        return bool(self.render or self.pin or self.publish or self.review)

    def __str__(self) -> str:
        return (
            f"render {len(self.render)}, pin {len(self.pin)}, "
            f"publish {len(self.publish)} collection(s), back to review {len(self.review)}"
        )


def broker_messages() -> Iterator[dict[str, Any]]:
    """Every message the broker holds for the pipeline's queues that it can read: on Redis
    every one not acknowledged; on RabbitMQ those no live worker holds (foundation/
    broker_contents.py)."""
    reader = broker_contents.contents(timeout=READ_TIMEOUT)
    try:
        yield from reader.messages(stages.PIPELINE_QUEUES)
    finally:
        reader.close()


def waiting_for_messages() -> tuple[set[int], set[int]]:
    """(token pks, collection pks) that a message in the broker will move on."""
    tokens: set[int] = set()
    collections: set[int] = set()
    token_actors = stages.token_actors()
    collection_actors = {s.actor for s in stages.STAGES if s.target == "collection"}
    for message in broker_messages():
        args = message.get("args") or [None]
        if message.get("actor_name") in token_actors:
            tokens.add(args[0])
        elif message.get("actor_name") in collection_actors:
            collections.add(args[0])
    return tokens, collections


def stuck(older_than: float, chain_id: int | None = None):
    """Tokens of running collections, untouched for ``older_than`` seconds, at a status a
    message moves on (see the module doc), whether or not a message is on its way."""
    now = timezone.now()
    tokens = Token.objects.filter(
        collection__paused=False, updated_at__lt=now - timedelta(seconds=older_than)
    )
    if chain_id is not None:
        tokens = tokens.filter(collection__chain_id=chain_id)
    stale_claim = now - timedelta(seconds=settings.PUBLISH_CLAIM_TIMEOUT)
    return tokens.filter(
        Q(status__in=[Status.SEED_COMMITTED, Status.RENDERED, Status.PINNED])
        | (Q(status=Status.RENDERING) & lease_free())
        | Q(status=Status.PUBLISHING, updated_at__lt=stale_claim)
    )


def redrive(older_than: float, chain_id: int | None = None, *, dry_run: bool = False) -> Redriven:
    """Send the message each stuck token waits for (see the module doc); ``dry_run`` only
    says what it would send."""
    result = Redriven()
    candidates = list(
        stuck(older_than, chain_id)
        .annotate(max_attempts=F("collection__max_attempts"))
        .values_list("pk", "status", "collection_id", "attempt", "max_attempts")
    )
    if not candidates:
        return result
    covered_tokens, covered_collections = waiting_for_messages()
    for pk, status, collection_pk, attempt, max_attempts in candidates:
        if status in (Status.PINNED, Status.PUBLISHING):
            if collection_pk not in covered_collections and collection_pk not in result.publish:
                result.publish.append(collection_pk)
        elif pk in covered_tokens:
            continue
        elif status == Status.RENDERED:
            result.pin.append(pk)
        elif status == Status.RENDERING and attempt >= max_attempts:
            result.review.append(pk)
        else:
            result.render.append(pk)
    if dry_run:
        return result
    for pk in result.review:
        if Token.objects.filter(lease_free(), pk=pk, status=Status.RENDERING).update(
            status=Status.NEEDS_REVIEW, render_lease_owner="", render_lease_expires=None,
            failure_reason=LOST_RERENDER,
        ):  # fmt: skip
            events.record([pk], Status.NEEDS_REVIEW, LOST_RERENDER)
    for pk in result.render:
        stages.send(stages.RENDER, pk)
    for pk in result.pin:
        stages.send(stages.PIN, pk)
    for collection_pk in result.publish:
        stages.send(stages.PUBLISH, collection_pk)
    if result:
        log.info("sent again the messages of stuck tokens: %s", result)
    return result
