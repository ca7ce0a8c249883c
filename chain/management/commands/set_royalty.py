"""``manage.py set_royalty <slug> [RECEIVER BASIS_POINTS]``: change the royalty the contract
pays, and the contract metadata that repeats it, with the admin key.

Run it where the contract admin's key is (as ``freeze_collection``). It pins the contract
metadata with the new royalty on each IPFS target, sends ``setDefaultRoyalty`` and then
``setContractURI``, and records the new contract URI. Without a royalty it only brings the
contract metadata in line with the royalty the contract pays (after the admin changed it
elsewhere), and records the contract URI the chain holds once nothing is left to send.
``--print`` pins, and prints the transactions for an external signer (a multisig sends both in
one batch); run the command again without a royalty once they are on-chain, to record them.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from web3 import Web3

from chain import wallets
from chain.admin_calls import AdminCall
from chain.chains import web3_for
from chain.contract import bind
from chain.errors import ChainError
from chain.freeze import royalty_of
from chain.royalty import check_royalty, record_contract_uri, royalty_change
from chain.rpc import connect
from chain.sender import send_transaction
from generation.models import Collection
from ipfs.errors import IpfsError


class Command(BaseCommand):
    help = (
        "Change the royalty a collection's contract pays and its contract metadata with it "
        "(sends setDefaultRoyalty and setContractURI as the admin)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug")
        parser.add_argument(
            "royalty",
            nargs="*",
            metavar="RECEIVER BASIS_POINTS",
            help="the new receiver and rate (500 = 5 %%); none: keep the contract's royalty and "
            "bring the contract metadata in line with it",
        )
        parser.add_argument("--rpc-url", default=None, help="default: the collection's chain's")
        parser.add_argument(
            "--print",
            action="store_true",
            dest="print_only",
            help="pin, and print the transactions for an external signer; send nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        collection = Collection.objects.filter(slug=options["slug"]).first()
        if collection is None:
            raise CommandError(f"no collection with the slug {options['slug']!r}")
        if len(options["royalty"]) not in (0, 2):
            raise CommandError("give the royalty as RECEIVER BASIS_POINTS, or nothing")
        try:
            royalty = check_royalty(*options["royalty"]) if options["royalty"] else None
            url = options["rpc_url"]
            w3 = (
                connect(url, chain_id=collection.chain_id) if url else web3_for(collection.chain_id)
            )
            calls = royalty_change(w3, collection, royalty)
            if options["print_only"]:
                self.stdout.write(json.dumps([call.as_dict() for call in calls], indent=2))
                if calls:
                    self.stderr.write(
                        f"once the chain holds them, run `manage.py set_royalty {collection.slug}`"
                        " to record the new contract URI"
                    )
                return
            sent = self._send(w3, collection, calls) if calls else []
            paid = royalty_of(w3, collection)
            uri = record_contract_uri(w3, collection) if collection.config_digest else ""
        except (ChainError, IpfsError, ImproperlyConfigured, OSError) as exc:
            raise CommandError(f"royalty not changed: {exc}") from exc
        pays = f"{paid.basis_points} basis points to {paid.recipient}" if paid else "no royalty"
        self.stdout.write(
            f"{collection.slug}: the contract pays {pays}"
            + (f"; contract metadata {uri}" if uri else "")
            + (f"; sent {', '.join(sent)}" if sent else "; nothing to send")
        )

    def _send(self, w3: Web3, collection: Collection, calls: list[AdminCall]) -> list[str]:
        """Send each call from the admin's account, in order; what was sent, with its hash."""
        admin = wallets.deployer(collection.chain_id)
        contract = bind(w3, collection.contract_address)
        sent: list[str] = []
        for call in calls:
            name = call.function.split("(")[0]
            try:
                receipt = send_transaction(
                    w3,
                    admin,
                    getattr(contract.functions, name)(*call.args),
                    purpose=f"{name} {collection.slug}",
                )
            except ChainError as exc:
                if not sent:
                    raise
                raise CommandError(
                    f"{name} failed: {exc}; {', '.join(sent)} went through: run the same "
                    "command again to send the rest"
                ) from exc
            sent.append(f"{name} {receipt['transactionHash'].to_0x_hex()}")
        return sent
