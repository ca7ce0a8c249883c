"""``manage.py export_car <collection>``: the collection's every pinned block in one CAR file.

Upload it to any IPFS service (a CAR upload, ``ipfs dag import``, a Filecoin deal) to give the
whole collection another home (generation/car_export.py says what is in it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Write a CAR v1 file of every pinned block of a collection, under one root folder."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("collection", help="the collection's slug")
        parser.add_argument(
            "-o", "--output", type=Path, help="where to write it (default: <slug>.car here)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from generation.car_export import export_car_to
        from generation.models import Collection
        from ipfs.errors import IpfsError

        collection = Collection.objects.filter(slug=options["collection"]).first()
        if collection is None:
            raise CommandError(f"no collection {options['collection']!r}")
        path = options["output"] or Path(f"{collection.slug}.car")
        try:
            result = export_car_to(collection, path)
        except IpfsError as exc:
            raise CommandError(f"{collection.slug}: {exc}") from exc
        self.stdout.write(
            f"{path}: {result.blocks} blocks, {result.size} bytes, {len(result.items)} items "
            f"under root {result.root} ({collection.cid_profile} CID profile)"
        )
