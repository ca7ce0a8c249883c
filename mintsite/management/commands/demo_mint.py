"""``manage.py demo_mint`` (what ``make demo`` calls), with the stack from ``make run`` up.

Mints from anvil's funded test accounts, waits until each token is published on-chain, and
prints its seed, its traits (the metadata's attributes), its tokenURI and a gateway link to its
image, read from the chain and the gateway, not from the database.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from eth_account import Account

from chain.contract import bind
from chain.rpc import connect
from chain.wallets import ANVIL_KEYS

MINTERS = (3, 4)  # anvil accounts that hold no role in the backend


class Command(BaseCommand):
    help = "Mint a few tokens on the embedded chain and print what each became."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--quantities", default="2,1", help="one mint transaction each")
        parser.add_argument("--timeout", type=float, default=600.0)

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(settings.DEPLOYMENT_FILE)
        if not path.exists():
            raise CommandError(f"{path} does not exist: start the stack with `make run` first")
        info = json.loads(path.read_text())
        w3 = connect(info["rpc_url"])
        if not w3.is_connected():
            raise CommandError(f"no chain answers at {info['rpc_url']}: is `make run` up?")
        contract = bind(w3, info["contract_address"])
        price = contract.functions.price().call()
        minted: list[int] = []
        for i, quantity in enumerate(int(q) for q in options["quantities"].split(",")):
            account = Account.from_key(ANVIL_KEYS[MINTERS[i % len(MINTERS)]])
            before = contract.functions.totalSupply().call()
            tx = contract.functions.mint(quantity).build_transaction(
                {
                    "from": account.address,
                    "value": price * quantity,
                    "nonce": w3.eth.get_transaction_count(account.address, "pending"),
                }
            )
            tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
            if receipt["status"] != 1:
                raise CommandError(f"mint transaction {tx_hash.to_0x_hex()} reverted")
            minted += range(before + 1, before + quantity + 1)
            self.stdout.write(
                f"minted {quantity} from {account.address} in block {receipt['blockNumber']}"
            )
        gateway = info.get("ipfs_gateway_url", f"{info['web_url']}/ipfs")
        deadline = time.monotonic() + options["timeout"]
        for token_id in minted:
            # Until publication tokenURI names the placeholder; the digest says it is done.
            while contract.functions.metadataDigestOf(token_id).call() == bytes(32):
                if time.monotonic() > deadline:
                    raise CommandError(f"token {token_id} was not published in time")
                time.sleep(1)
            uri = contract.functions.tokenURI(token_id).call()
            seed = bytes(contract.functions.seedOf(token_id).call()).hex()
            metadata = httpx.get(f"{gateway}/{uri.removeprefix('ipfs://')}", timeout=10).json()
            image = metadata["image"].removeprefix("ipfs://")
            traits = ", ".join(
                f"{a['trait_type']} {a['value']}" for a in metadata.get("attributes", [])
            )
            self.stdout.write(
                f"token {token_id}: seed 0x{seed}\n  traits {traits or '(none)'}\n"
                f"  tokenURI {uri}\n  image {gateway}/{image}"
            )
