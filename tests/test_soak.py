"""The broker restarted under load, with a render worker SIGKILLed mid-render: the soak, small.

``make soak`` runs 1,000 mints (devtools/soak.py); this runs 16 on the same stack: a fresh
anvil, a broker of its own that keeps its messages on disk (a redis-server with an append-only
file, or with ``make test-rabbitmq`` a RabbitMQ node), restarted with messages queued, delayed
and in flight, the listener, render and IO workers as real processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from devtools.soak import run_soak

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.django_db(transaction=True)]


def test_a_broker_restart_and_a_killed_worker_lose_no_mint(
    tmp_path: Path, reference_models: Path
) -> None:
    # renders of a second or so (64x64, 10 steps): a worker is caught mid-render for sure
    report = run_soak(
        16, workdir=tmp_path, kill_at=0.25, restart_at=0.5, stall_seconds=120, size=64, steps=10
    )
    assert report.broker == settings.BROKER_KIND
    assert report.killed_while_rendering >= 1, report.lines()
    held = report.at_restart
    assert held and held["queued"] + held["delayed"] + held["in_flight"] > 0, report.lines()
    assert (report.minted, report.published, report.lost) == (16, 16, 0), report.lines()
    assert (report.pinned_twice, report.published_twice) == (0, 0), report.lines()
