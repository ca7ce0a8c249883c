"""``manage.py redrive``: send again the messages stuck tokens wait for (generation/redrive.py).

The leading listener does this every ``SWEEP_SECONDS``; an operator runs it after an incident
that lost messages (Redis restarted without its append-only file, a queue emptied by hand)
without waiting for the next sweep, with ``--dry-run`` first to see what it would send.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Send again the message each stuck token waits for (none in the broker for it)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            default=settings.SWEEP_SECONDS,
            help="seconds a token must be untouched (default SWEEP_SECONDS, %(default)s)",
        )
        parser.add_argument("--chain", type=int, help="only the collections of this chain id")
        parser.add_argument("--dry-run", action="store_true", help="say what, send nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        from redis.exceptions import RedisError

        from generation.redrive import redrive

        if options["older_than"] < 0:
            raise CommandError(f"--older-than must be 0 or more, not {options['older_than']}")
        try:
            result = redrive(options["older_than"], options["chain"], dry_run=options["dry_run"])
        except RedisError as exc:
            raise CommandError(f"the broker cannot be read: {exc}") from exc
        verb = "would send" if options["dry_run"] else "sent"
        self.stdout.write(
            f"{verb}: render {_pks(result.render)}; pin {_pks(result.pin)}; "
            f"publish for collection(s) {_pks(result.publish)}; "
            f"back to review {_pks(result.review)}"
        )


def _pks(pks: list[int]) -> str:
    return ", ".join(f"pk={pk}" for pk in pks) if pks else "none"
