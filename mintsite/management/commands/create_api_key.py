"""``manage.py create_api_key <collection> <name>``: a key for the API's write endpoints.

The key is printed once and stored only as its sha256; lose it and create another (revoke the
old one in the admin: API keys → revoked).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from generation.models import Collection
from mintsite.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key scoped to one collection and print it (shown only this once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("collection", help="the collection's slug")
        parser.add_argument("name", help="who or what will use the key, e.g. 'studio site'")

    def handle(self, *args: Any, **options: Any) -> None:
        slug, name = options["collection"], options["name"].strip()
        if not name:
            raise CommandError("the key needs a non-empty name")
        collection = Collection.objects.filter(slug=slug).first()
        if collection is None:
            known = ", ".join(Collection.objects.order_by("slug").values_list("slug", flat=True))
            raise CommandError(f"no collection {slug!r}; known: {known or 'none'}")
        row, key = ApiKey.issue(collection, name)
        self.stderr.write(
            f"API key {row.prefix} '{name}' for {collection.slug}; store it now, "
            "it is not shown again. Send it as 'Authorization: Bearer <key>'."
        )
        self.stdout.write(key)
