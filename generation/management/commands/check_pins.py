"""``manage.py check_pins``: ask each IPFS target for each pinned CID, and pin again what is
missing (generation/pin_check.py).

After a provider's exit, replace it in ``IPFS_TARGETS`` and run this once: the new target has
none of the pins yet, so every one is copied to it. Exits with status 1 while any pin is still
missing somewhere, so a cron job or a runbook step notices.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Ask each IPFS target for each pinned CID and pin again what a target lost."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--collection", help="only this collection's pins (its slug)")
        parser.add_argument(
            "--target",
            action="append",
            default=[],
            help="only this target (a name in IPFS_TARGETS); may be repeated",
        )
        parser.add_argument("--cid", action="append", default=[], help="only this CID")
        parser.add_argument(
            "--limit", type=int, help="at most this many CIDs, the ones checked longest ago"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="ask and record, pin nothing again (what is missing is reported)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django.core.exceptions import ImproperlyConfigured

        from generation.models import Collection
        from generation.pin_check import check_pins

        collection_pk = None
        if options["collection"]:
            collection = Collection.objects.filter(slug=options["collection"]).first()
            if collection is None:
                raise CommandError(f"no collection {options['collection']!r}")
            collection_pk = collection.pk
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError(f"--limit {options['limit']}: give at least 1")
        try:
            outcome = check_pins(
                collection_pk=collection_pk,
                cids=options["cid"],
                targets=options["target"],
                limit=options["limit"],
                repin=not options["dry_run"],
            )
        except KeyError as exc:  # a --target not in IPFS_TARGETS
            raise CommandError(str(exc.args[0])) from exc
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"checked {outcome.checked} pinned CIDs")
        for name, tally in outcome.targets.items():
            self.stdout.write(f"  {name}: {tally.line()}")
        for problem in outcome.problems:
            self.stderr.write(f"missing: {problem}")
        unreachable = sum(t.unreachable for t in outcome.targets.values())
        if outcome.missing or unreachable:
            raise CommandError(
                f"{outcome.missing} pins still missing, {unreachable} not checked (target "
                "unreachable); see above and the admin's Pins"
            )
