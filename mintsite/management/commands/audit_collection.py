"""``manage.py audit_collection <slug>``: ``mintverify --collection`` for one of this
deployment's collections.

The slug only says where to look: the contract address, the chain's first RPC endpoint (or
``RPC_URL``) and this deployment's gateway (``IPFS_GATEWAY_URL``, then a public one). The audit
itself reads the chain and the gateway, never this project's database (verifier/audit.py).
Exit status 0 when it finds nothing, 1 with findings, 2 when it cannot run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chain.models import Chain
from generation.models import Collection
from verifier.audit import audit_collection, render_audit
from verifier.errors import VerifyError
from verifier.fetching import Gateway, default_gateways


class Command(BaseCommand):
    help = (
        "Audit a collection from public data: every token's checks, quota counts and weighted "
        "frequencies against the frozen table, shared images and near duplicates, tokens on "
        "the placeholder."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("collection", help="the collection's slug")
        parser.add_argument(
            "--gateway",
            action="append",
            help="IPFS gateway URL; repeat it to try several in order (default: this "
            "deployment's, then a public one)",
        )
        parser.add_argument("--weights", type=Path, help="folder with diffusion/ and clip/")
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["collection"]
        collection = Collection.objects.filter(slug=slug).first()
        if collection is None:
            known = ", ".join(Collection.objects.order_by("slug").values_list("slug", flat=True))
            raise CommandError(
                f"unknown collection {slug!r}; known collections: {known or '(none)'}"
            )
        if not collection.contract_address:
            raise CommandError(f"collection {slug!r} has no contract yet: deploy it first")
        chain = Chain.objects.filter(chain_id=collection.chain_id).first()
        rpc = chain.urls()[0] if chain and chain.urls() else settings.RPC_URL.split(",")[0]
        gateway = Gateway(options["gateway"] or default_gateways(settings.IPFS_GATEWAY_URL))
        try:
            audit = audit_collection(rpc, collection.contract_address, gateway, options["weights"])
        except VerifyError as exc:
            raise CommandError(f"the audit could not run: {exc}", returncode=2) from exc
        if options["json"]:
            self.stdout.write(json.dumps(audit.as_json(), indent=2))
        else:
            self.stdout.write(render_audit(audit))
        if not audit.clean:
            raise CommandError(
                f"the audit found {len(audit.findings)} problem(s): see the FINDING lines",
                returncode=1,
            )
