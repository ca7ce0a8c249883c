"""``manage.py fulfil_vrf <slug>``: stand in for the Chainlink node on the local chain.

For a collection seeded by VRF on the local chain (deployed with ``--vrf-coordinator local``),
the coordinator is Chainlink's ``VRFCoordinatorV2_5Mock``, which no Chainlink node serves: this
command fulfils the requests made to it, once or (``--watch``) as they come, from the deployer's
account. The mock's words are ``keccak256(requestId, i)``, not random: use it to try the flow,
never on a public chain, where Chainlink's own coordinator and node do this with a proof.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from chain import wallets
from chain.chains import web3_for
from chain.vrf import fulfil_pending
from generation.models import Collection


class Command(BaseCommand):
    help = "Fulfil the VRF requests of a collection on the local chain's mock coordinator."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug")
        parser.add_argument("--watch", action="store_true", help="keep fulfilling, every second")

    def handle(self, *args: Any, **options: Any) -> None:
        collection = Collection.objects.filter(slug=options["slug"]).first()
        if collection is None:
            raise CommandError(f"no collection {options['slug']!r}")
        if not collection.vrf_coordinator:
            raise CommandError(f"{collection.slug} takes its seeds from block hashes, not VRF")
        w3 = web3_for(collection.chain_id)
        key = "0x" + bytes(wallets.deployer(collection.chain_id).key).hex()
        while True:
            done = fulfil_pending(
                w3, key, collection.vrf_coordinator, from_block=collection.deployment_block
            )
            for request_id in done:
                self.stdout.write(f"fulfilled VRF request {request_id}")
            if not options["watch"]:
                return
            time.sleep(1)
