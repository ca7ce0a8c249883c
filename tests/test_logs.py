"""Structured logs: every line a worker logs while it handles a message says which token and
which stage it is about, in the plain format for people and in JSON for log pipelines.

The main test runs the real render actor in a real ``rundramatiq`` worker process on the real
broker, with ``LOG_FORMAT=json``, and reads what the worker wrote.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from devtools.fleet import Fleet
from foundation.logcontext import log_context, update_context
from generation.models import Token
from mintsite.observability.logs import (
    ContextFilter,
    JsonLineFormatter,
    PlainFormatter,
    logging_config,
)
from tests.conftest import database_url
from tests.test_pipeline import make_token


def record(message: str, **extra: Any) -> logging.LogRecord:
    """A record as a logger makes it, passed through the filter the handler has."""
    rec = logging.LogRecord("generation.pipeline", logging.INFO, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(rec, key, value)
    ContextFilter().filter(rec)
    return rec


def test_it_puts_the_stage_and_token_in_brackets_in_the_plain_format() -> None:
    with log_context(stage="render_token", collection="aurora", token_id=7, token_pk=31):
        line = PlainFormatter().format(record("rendered"))
    assert line.endswith(
        " INFO generation.pipeline [stage=render_token collection=aurora token_id=7 "
        "token_pk=31]: rendered"
    )
    # outside the context the line is just shorter
    assert PlainFormatter().format(record("idle")).endswith(" INFO generation.pipeline: idle")


def test_it_writes_one_json_object_per_line_with_the_context_as_fields() -> None:
    with log_context(chain_id=31337, collection="aurora"):
        update_context(blocks="100-199")
        inside = json.loads(JsonLineFormatter().format(record("3 mints", extra_field="kept")))
        update_context(blocks="200-299")
        later = json.loads(JsonLineFormatter().format(record("0 mints")))
    after = json.loads(JsonLineFormatter().format(record("poll done")))
    assert inside["message"] == "3 mints"
    assert inside["level"] == "INFO" and inside["logger"] == "generation.pipeline"
    assert (inside["chain_id"], inside["collection"], inside["blocks"]) == (
        31337,
        "aurora",
        "100-199",
    )
    assert inside["extra_field"] == "kept"
    assert later["blocks"] == "200-299"
    assert "blocks" not in after and "collection" not in after
    assert "context" not in inside  # the plain format's rendering stays out of JSON


def test_it_names_a_log_format_it_does_not_know() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"LOG_FORMAT='xml' is not one of"):
        logging_config("xml", "INFO")


def test_it_refuses_a_context_field_nobody_would_find() -> None:
    with (
        pytest.raises(ValueError, match=r"unknown log context field\(s\) \['tokenid'\]"),
        log_context(tokenid=3),
    ):
        pass


@pytest.mark.django_db(transaction=True)
def test_it_tags_every_line_of_a_render_in_a_real_worker_with_its_token_and_stage(
    reference_models: Path, redis_url: str, tmp_path: Path
) -> None:
    from generation.stages import IO_QUEUE
    from generation.tasks import render_token

    # Given a token waiting to render, and a render worker logging JSON
    token = make_token(reference_models, threshold=-1.0, slug="logged", token_id=5)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mintsite.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "RENDER_CACHE_DIR": str(tmp_path / "renders"),
        "IPFS_STORE_DIR": str(settings.IPFS_STORE_DIR),
        "RENDER_DEVICE": "cpu",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    fleet = Fleet(env, tmp_path / "logs")
    fleet.start_worker("worker", "render", threads=1)
    worker = fleet.processes["worker"]
    try:
        # When the render message is sent
        render_token.send(token.pk)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            token.refresh_from_db()
            if token.status == Token.Status.RENDERED or worker.poll() is not None:
                break
            time.sleep(0.5)
        assert token.status == Token.Status.RENDERED, fleet.log_tail()
    finally:
        fleet.stop()
        dramatiq.get_broker().flush(IO_QUEUE)  # the pin message nobody here takes

    # Then the worker wrote JSON lines, and each line of the render says token and stage
    lines = [json.loads(line) for line in fleet.log("worker").splitlines() if line.startswith("{")]
    expected = {
        "stage": "render_token",
        "collection": "logged",
        "token_id": 5,
        "token_pk": token.pk,
    }
    rendered = [line for line in lines if line["logger"].startswith("generation.pipeline")]
    assert rendered, "the pipeline logged nothing"
    assert any("attempt 0 rendered in" in line["message"] for line in rendered)
    for line in rendered:
        assert {key: line.get(key) for key in expected} == expected, line
    done = [line for line in lines if line["message"].startswith("render_token done in")]
    assert len(done) == 1
    assert {key: done[0].get(key) for key in expected} == expected
    assert done[0]["message_id"]
    # and the context ends with the message: the warm-up before it and nothing after carry it
    warm = [line for line in lines if line["logger"] == "generation.warmup"]
    assert warm and all("stage" not in line for line in warm)
