"""The chain listener daemon: ``manage.py listen_chain``.

SIGTERM or Ctrl-C finishes the current poll and exits with a summary line.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand
from web3.exceptions import Web3Exception

from chain.errors import ChainError
from chain.listener import Listener, PollSummary
from chain.rpc import connect
from generation.models import Collection, Token

log = logging.getLogger(__name__)


def enqueue_render(token: Token) -> None:
    from generation.tasks import render_token

    render_token.send(token.pk)


class Command(BaseCommand):
    help = "Follow the chain: record confirmed mints, commit their seeds, enqueue rendering."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--rpc-url", default=None, help="default: settings.RPC_URL")
        parser.add_argument("--poll-interval", type=float, default=settings.CHAIN_POLL_INTERVAL)
        parser.add_argument("--once", action="store_true", help="poll once and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        self.shutdown = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        w3 = connect(options["rpc_url"])
        listener = Listener(
            w3, on_seed_committed=enqueue_render, log_range=settings.CHAIN_LOG_RANGE
        )
        total = PollSummary()
        polls = errors = 0
        self.stdout.write(f"listening on chain {listener.chain_id} at {w3.provider.endpoint_uri}")
        while not self.shutdown:
            collections = list(Collection.objects.filter(chain_id=listener.chain_id))
            try:
                summary = listener.poll(collections)
            except (
                ChainError,
                Web3Exception,
                requests.RequestException,
                OSError,
            ) as exc:
                # Transient: the node is away or a transaction did not go through; the cursor
                # and token rows are untouched, so the next poll redoes exactly this work.
                errors += 1
                log.error("poll failed (%s: %s); retrying", type(exc).__name__, exc)
                summary = PollSummary()
            total.add(summary)
            polls += 1
            if options["once"]:
                break
            self._sleep(options["poll_interval"] if errors == 0 else min(30.0, 2.0**errors))
            if summary.head:
                errors = 0
        self.stdout.write(f"listener stopped after {polls} polls, {errors} errors: {total}")

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.shutdown = True

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.shutdown and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))
