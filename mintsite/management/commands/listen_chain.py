"""The chain listener daemon: ``manage.py listen_chain``.

Follows every configured chain (``Chain`` rows) for all of their collections. Per chain, one
daemon leads (see chain/leader.py); others wait as standbys. SIGTERM or Ctrl-C finishes the
current range and exits with a summary line. A reorg deeper than a chain's finality window
stops the daemon with exit status 1 and the reason.

An entry point of the whole product, so it sits with the project's commands above every layer:
it wires the listener (chain/) to the sweeps of the token's lifecycle (generation/redrive.py),
of the webhooks (mintsite/webhooks.py) and of the pins (generation/pin_check.py, every
``PIN_CHECK_SECONDS``).
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import RedisError
from web3.exceptions import Web3Exception

from chain.errors import ChainError, DeepReorg
from chain.leader import LeaderLock
from chain.listener import Listener, PollSummary
from chain.models import Chain
from chain.rpc import connect
from chain.seed_commit import enqueue_seed_commits
from generation.pin_check import send_check
from generation.redrive import redrive
from mintsite import webhooks

log = logging.getLogger(__name__)


def redrive_stuck(chain_id: int, older_than: float) -> None:
    """Send again the messages the chain's stuck tokens wait for (generation/redrive.py)."""
    try:
        redrive(older_than=older_than, chain_id=chain_id)
    except RedisError as exc:  # the next sweep tries again
        log.warning("chain %d: sweep skipped, the broker failed: %s", chain_id, exc)


def send_pin_check() -> None:
    """Send the periodic pin check (generation/pin_check.py) to the io workers."""
    try:
        send_check()
    except Exception as exc:  # a broker error of either broker: the next sweep sends again
        log.warning("pin check not sent, the broker failed: %s: %s", type(exc).__name__, exc)


class Command(BaseCommand):
    help = "Follow the chains: record confirmed mints exactly once, survive reorgs, enqueue seeds."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--poll-interval", type=float, default=settings.CHAIN_POLL_INTERVAL)
        parser.add_argument("--once", action="store_true", help="poll each chain once and exit")
        parser.add_argument("--chain", type=int, action="append", help="only these chain ids")

    def handle(self, *args: Any, **options: Any) -> None:
        self.shutdown = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        locks: dict[int, LeaderLock] = {}
        listeners: dict[int, Listener] = {}
        total = PollSummary()
        polls = errors = 0
        standby_logged: set[int] = set()
        swept: dict[int, float] = {}
        sweep = settings.SWEEP_SECONDS
        pins_checked = time.monotonic()  # the first pin check one PIN_CHECK_SECONDS from now
        try:
            while not self.shutdown:
                chains = Chain.objects.all()
                if options["chain"]:
                    chains = chains.filter(chain_id__in=options["chain"])
                for chain in chains:
                    if self.shutdown:
                        break
                    lock = locks.setdefault(
                        chain.chain_id, LeaderLock(f"listen_chain:{chain.chain_id}")
                    )
                    if not lock.try_acquire():
                        if chain.chain_id not in standby_logged:
                            self.stdout.write(
                                f"standby for chain {chain.chain_id}: another listener leads"
                            )
                            standby_logged.add(chain.chain_id)
                        listeners.pop(chain.chain_id, None)
                        continue
                    try:
                        listener = listeners.get(chain.chain_id)
                        if listener is None:
                            listener = Listener(
                                connect(chain.urls()),
                                chain,
                                on_confirmed=enqueue_seed_commits,
                                should_stop=lambda: self.shutdown,
                            )
                            listeners[chain.chain_id] = listener
                            self.stdout.write(f"leading chain {chain.chain_id} via {chain.urls()}")
                            listener.requeue_confirmed()
                            redrive_stuck(chain.chain_id, sweep)
                            swept[chain.chain_id] = time.monotonic()
                        elif time.monotonic() - swept.get(chain.chain_id, 0.0) > sweep:
                            listener.requeue_confirmed(older_than=sweep)
                            # the tokens and webhook deliveries whose message was lost
                            redrive_stuck(chain.chain_id, sweep)
                            webhooks.enqueue_overdue(older_than=sweep)
                            swept[chain.chain_id] = time.monotonic()
                        listener.chain = chain  # settings edited in the admin apply next poll
                        total.add(listener.poll())
                        errors = 0
                    except DeepReorg:
                        raise
                    except (ChainError, Web3Exception, requests.RequestException, OSError) as exc:
                        # Transient: the cursor and rows are untouched, so the next poll redoes
                        # exactly this work.
                        errors += 1
                        log.error(
                            "chain %s: poll failed (%s: %s)",
                            chain.chain_id,
                            type(exc).__name__,
                            exc,
                        )
                polls += 1
                every = settings.PIN_CHECK_SECONDS
                if every > 0 and listeners and time.monotonic() - pins_checked > every:
                    send_pin_check()  # by whichever daemon leads a chain
                    pins_checked = time.monotonic()
                if options["once"]:
                    break
                self._sleep(options["poll_interval"] if errors == 0 else min(30.0, 2.0**errors))
        except DeepReorg as exc:
            self.stderr.write(f"listener stopped: {exc}")
            raise CommandError(str(exc)) from exc
        finally:
            for lock in locks.values():
                lock.release()
            self.stdout.write(f"listener stopped after {polls} polls: {total}")

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.shutdown = True

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.shutdown and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))
