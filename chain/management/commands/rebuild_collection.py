"""``manage.py rebuild_collection``: a lost collection back from the chain and IPFS alone.

The recovery runbook's last resort (docs/deploy.md): with no usable database backup, the
contract's frozen config, its mints, transfers, seeds and published metadata rebuild what the
API serves; chain/rebuild.py says how and what cannot come back.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Rebuild a collection's database rows (config, tokens, transfers, seeds, published "
        "metadata) from its contract and IPFS; refuses before writing anything if the local "
        "models do not match the frozen config's fingerprints."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--rpc-url", required=True, help="a JSON-RPC endpoint of the chain")
        parser.add_argument("--contract", required=True, help="the collection's contract address")
        parser.add_argument("--slug", required=True, help="the slug to record it under")
        parser.add_argument(
            "--model-dir", required=True, help="the local model the frozen fingerprint names"
        )
        parser.add_argument(
            "--clip-dir", required=True, help="the local CLIP model the frozen fingerprint names"
        )
        parser.add_argument(
            "--model-config-dir", default="", help="for a single-file checkpoint: its configs"
        )
        parser.add_argument(
            "--style-image", action="append", default=[], help="each style image, in order"
        )
        parser.add_argument(
            "--adapter", action="append", default=[], help="each LoRA adapter file, in order"
        )
        parser.add_argument("--onnx-dir", default="", help="the ONNX export, if it renders so")
        parser.add_argument(
            "--from-block",
            type=int,
            help="the contract's deployment block (default: found by binary search on "
            "eth_getCode, which needs an archive node for old blocks)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from web3 import Web3

        from chain.rebuild import LocalModels, RebuildRefused, fetch_from_backend
        from chain.rebuild import rebuild_collection as rebuild
        from ipfs.errors import IpfsError

        w3 = Web3(Web3.HTTPProvider(options["rpc_url"]))
        local = LocalModels(
            model_dir=options["model_dir"],
            clip_dir=options["clip_dir"],
            model_config_dir=options["model_config_dir"],
            style_images=options["style_image"],
            adapters=options["adapter"],
            onnx_dir=options["onnx_dir"],
        )
        try:
            result = rebuild(
                w3,
                contract_address=options["contract"],
                slug=options["slug"],
                local=local,
                fetch=fetch_from_backend(),
                from_block=options["from_block"],
                rpc_url=options["rpc_url"],
                say=lambda line: self.stdout.write(line),
            )
        except (RebuildRefused, IpfsError) as exc:
            raise CommandError(f"nothing written: {exc}") from exc
        self.stdout.write(f"rebuilt {result}")
        self.stdout.write(
            "next: start the listener and the workers, then run manage.py redrive (tokens not "
            "yet published carry on from their status) and mintverify --collection"
        )
