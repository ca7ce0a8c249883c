"""The stage table (generation/stages.py) against what the workers declare and what the broker
receives: a stage sent by name reaches the actor the table names, on its queue, with the
arguments that actor takes, and no process has to import an actor to send it."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.test import override_settings

import chain.tasks
import generation.tasks
import mintsite.tasks
from generation import stages
from generation.models import Token
from mintsite.pages.progress import STOPPED, progress_document
from tests.test_pipeline import SEED
from tests.test_pipeline import make_token as pipeline_token

pytestmark = pytest.mark.django_db
Status = Token.Status


@pytest.fixture
def broker(redis_url: str) -> Iterator[dramatiq.Broker]:
    """The run's real Redis broker, its pipeline queues emptied after each test."""
    broker = dramatiq.get_broker()
    yield broker
    for queue in stages.QUEUES:
        broker.flush(queue)


def queued(broker: dramatiq.Broker, queue: str, *, delayed: bool = False) -> list[dict[str, Any]]:
    """The messages waiting on ``queue`` (or its delay queue), as the broker stores them."""
    name = dramatiq.common.dq_name(queue) if delayed else queue
    key = f"{broker.namespace}:{name}.msgs"  # type: ignore[attr-defined]
    return [json.loads(raw) for raw in broker.client.hvals(key)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("stage", stages.STAGES, ids=lambda s: s.name)
def test_every_stage_names_an_actor_the_workers_declare_on_its_queue(stage: stages.Stage) -> None:
    actor = dramatiq.get_broker().get_actor(stage.actor)
    assert actor.queue_name == stage.queue
    for option, value in stage.options.items():
        assert actor.options[option] == value, option
    # what Stage.args builds for it is what the actor's function takes
    expected = {"token": 1, "tokens": 2, "collection": 1}[stage.target]
    parameters = list(inspect.signature(actor.fn).parameters)
    if stage in stages.REVIEW:
        assert parameters[0] == "token_pk"  # and who asked, and the attempts
    else:
        assert len(parameters) == expected, parameters


def test_every_stage_the_pipeline_declares_is_in_the_table() -> None:
    # Given every actor of the three tasks modules that a token's status waits for
    declared = {
        name
        for module in (generation.tasks, chain.tasks, mintsite.tasks)
        for name, value in vars(module).items()
        if isinstance(value, dramatiq.Actor) and not name.startswith("record_")
    }
    # Then each is a stage of the table, except the webhooks' delivery and the pin check (no
    # token status waits for them)
    assert declared - {s.actor for s in stages.STAGES} == {"deliver_webhook", "check_pins"}


def test_the_pipeline_hands_each_status_to_the_next_stage_in_order() -> None:
    walked = [Status.CONFIRMED]
    while (stage := stages.acting_on(walked[-1])) is not None:
        walked.append(stage.hands_over_to)
    assert walked == [
        Status.CONFIRMED,
        Status.SEED_COMMITTED,
        Status.RENDERED,
        Status.PINNED,
        Status.PUBLISHED,
    ]


def test_the_statuses_nothing_moves_on_are_where_pollers_stop() -> None:
    # The API's event stream and the mint page stop following a token at these: a status that
    # nothing moves on and is not here would leave a collector's page polling forever
    assert {Status.FINAL, Status.FAILED, Status.NEEDS_REVIEW, Status.REORGED} == stages.SETTLED
    for status in Status.values:
        moved = stages.acting_on(status) or status in stages.WORKING
        assert moved or status in stages.LISTENER_MOVES or status in stages.SETTLED, status


def test_the_mint_page_has_words_for_every_status() -> None:
    document = progress_document()
    for status in Status.values:
        assert status in document["statuses"] or status in STOPPED, status
    assert document["steps"][0] == "Confirming" and document["steps"][-1] == "Final"
    # a status's active steps are steps of the list (len(steps): all done)
    for first, last, _, _ in document["statuses"].values():
        assert 0 <= first <= last <= len(document["steps"])


@pytest.fixture
def make_token(reference_models: Path) -> Callable[..., Token]:
    """A token of one collection at ``status`` with ``fields`` (tests.test_pipeline's)."""

    def make(status: str, **fields: Any) -> Token:
        token = pipeline_token(reference_models, threshold=0.2, token_id=Token.objects.count() + 1)
        Token.objects.filter(pk=token.pk).update(**{"status": status, "seed": "", **fields})
        return Token.objects.get(pk=token.pk)

    return make


@pytest.mark.parametrize(
    ("fields", "stage"),
    [
        ({}, stages.SEED_COMMIT),
        ({"seed": SEED}, stages.RENDER),
        ({"seed": SEED, "image_sha256": "ab" * 32}, stages.PIN),
        (
            {
                "seed": SEED,
                "image_sha256": "ab" * 32,
                "metadata_cid": "bafy",
                "metadata_sha256": "cd" * 32,
            },
            stages.PUBLISH,
        ),
    ],
    ids=lambda v: v.name if isinstance(v, stages.Stage) else None,
)
def test_a_failed_token_resumes_at_the_first_stage_whose_result_it_lacks(
    fields: dict[str, str], stage: stages.Stage, make_token: Callable[..., Token]
) -> None:
    token = make_token(Status.FAILED, **fields)
    assert stages.resume_point(token) is stage


def test_a_handover_sends_the_next_stage_by_name_on_its_queue(
    broker: dramatiq.Broker, make_token: Callable[..., Token]
) -> None:
    # Given a token whose render just committed RENDERED
    token = make_token(Status.RENDERED)
    # When the render stage hands it over
    stages.hand_over(token.pk, token.collection_id, Status.RENDERED)
    # Then the pin stage's message waits on the io queue, for that token
    [message] = [m for m in queued(broker, stages.PIN.queue) if m["args"] == [token.pk]]
    assert message["actor_name"] == "pin_token"


@override_settings(PUBLISH_BATCH_SIZE=2, PUBLISH_BATCH_WAIT=30)
def test_publishing_waits_for_a_full_batch_or_the_batch_wait(
    broker: dramatiq.Broker, make_token: Callable[..., Token]
) -> None:
    # Given one pinned token of a collection that publishes two per transaction
    first = make_token(Status.PINNED)
    stages.hand_over(first.pk, first.collection_id, Status.PINNED)
    # Then its publishing run is delayed by the batch wait, for the collection
    ours = [first.collection_id]
    [delayed] = [m for m in queued(broker, stages.PUBLISH.queue, delayed=True) if m["args"] == ours]
    assert delayed["actor_name"] == "publish_pending" and delayed["options"]["eta"] > 0
    assert [m for m in queued(broker, stages.PUBLISH.queue) if m["args"] == ours] == []
    # When a second token is pinned, the batch is full: publishing is sent at once
    second = make_token(Status.PINNED)
    stages.hand_over(second.pk, second.collection_id, Status.PINNED)
    [now] = [m for m in queued(broker, stages.PUBLISH.queue) if m["args"] == ours]
    assert now["actor_name"] == "publish_pending"


def test_a_process_that_imports_no_actor_can_send_every_stage(redis_url: str) -> None:
    # Given a fresh process that loads Django and the stage table, and no tasks module
    code = (
        "import sys, django; django.setup(); import dramatiq\n"
        "from generation import stages\n"
        "for stage in stages.STAGES:\n"
        "    stages.send(stage, *stage.args(10**9, 10**9), delay_ms=3_600_000)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('generation', 'chain', "
        "'mintsite') and m.endswith('.tasks')))\n"
        "print(sorted(dramatiq.get_broker().get_declared_actors()))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mintsite.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    # Then it sent them without importing or declaring any actor
    assert out == ["[]", "[]"]
    broker = dramatiq.get_broker()
    sent = {
        m["actor_name"]
        for queue in stages.QUEUES
        for m in queued(broker, queue, delayed=True)
        if m["args"][0] == 10**9
    }
    assert sent == {s.actor for s in stages.STAGES}
    for queue in stages.QUEUES:
        broker.flush(queue)


def test_the_architecture_doc_lists_the_stage_table_as_it_is() -> None:
    # docs/architecture.md is where a new engineer reads the table; it must not drift
    doc = (Path(__file__).parent.parent / "docs" / "architecture.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[2].startswith("`"):
            rows[cells[2].strip("`")] = (cells[1], cells[3], cells[5])
    assert rows == {s.actor: (s.acts_on, s.queue, s.hands_over_to) for s in stages.STAGES}, (
        "docs/architecture.md's stage table differs from generation/stages.py"
    )
