"""``manage.py freeze_collection <slug>``: freeze a collection's config on-chain with the admin key.

Run it where the contract admin's key is (``DEPLOYER_KEY``, ``DEPLOYER_KEY_FILE`` or
``DEPLOYER_KEYSTORE``; anvil's account #0 on the embedded chain), never on the web tier. It
validates the config, pins the contract metadata and records the prepared freeze (the same as
the admin's "Prepare the freeze" does), sends ``freezeConfig``, and records the collection as
frozen. ``--print`` only prepares, and prints the transaction for an external signer (a
multisig, a hardware wallet); the listener records the freeze once the chain holds it.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import BaseCommand, CommandError

from chain import wallets
from chain.chains import web3_for
from chain.deployment import send_freeze
from chain.errors import ChainError
from chain.freeze import prepare_freeze
from chain.rpc import connect
from generation.models import Collection


class Command(BaseCommand):
    help = "Freeze a collection's generation config on-chain (sends freezeConfig as the admin)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug")
        parser.add_argument("--rpc-url", default=None, help="default: the collection's chain's")
        parser.add_argument(
            "--print",
            action="store_true",
            dest="print_only",
            help="prepare and print the transaction for an external signer; send nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        collection = Collection.objects.filter(slug=options["slug"]).first()
        if collection is None:
            raise CommandError(f"no collection with the slug {options['slug']!r}")
        try:
            url = options["rpc_url"]
            w3 = (
                connect(url, chain_id=collection.chain_id) if url else web3_for(collection.chain_id)
            )
            if options["print_only"]:
                call = prepare_freeze(collection, w3)
                self.stdout.write(json.dumps(call.as_dict(), indent=2))
                return
            tx_hash = send_freeze(w3, wallets.deployer(collection.chain_id), collection)
        except ValidationError as exc:
            raise CommandError(f"not frozen, the config is invalid: {exc.message_dict}") from exc
        except (ChainError, ImproperlyConfigured, OSError) as exc:
            raise CommandError(f"not frozen: {exc}") from exc
        collection.refresh_from_db()
        self.stdout.write(
            f"{collection.slug}: frozen, config digest {collection.config_digest}, contract "
            f"metadata {collection.contract_uri}"
            + (f", transaction {tx_hash}" if tx_hash else " (already on-chain; recorded)")
        )
