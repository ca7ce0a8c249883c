"""``manage.py deploy_collection``: deploy a collection's contract and register it.

The deployer (``DEPLOYER_KEY``) becomes the contract's admin and grants the seed-committer and
publisher roles to the accounts of ``SEED_COMMITTER_KEY`` and ``PUBLISHER_KEY``. On anvil's
chain (31337) anvil's test accounts #0, #1 and #2 are used when the keys are not set.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from chain import wallets
from chain.deployment import (
    CollectionSpec,
    deploy_collection,
    sale_spec_problems,
    write_deployment_file,
)
from chain.errors import MissingKey
from chain.rpc import connect
from generation.models import Collection

_DEFAULTS = CollectionSpec()


def _parser_for(name: str, default: Any) -> Any:
    if isinstance(default, dict | list):
        # --rarity '{"mode": "weighted", "categories": [...]}', --lora-adapters '[{...}]'
        return json.loads
    if name in ("uniqueness_threshold", "near_duplicate_threshold", "style_images_threshold"):
        return float
    return type(default)


class Command(BaseCommand):
    help = "Deploy a MintOnDemand contract and register the collection with this backend."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--rpc-url", default=None, help="default: settings.RPC_URL")
        for spec_field in fields(CollectionSpec):
            default = getattr(_DEFAULTS, spec_field.name)
            if isinstance(default, bool):  # --publish-weights / --no-publish-weights
                parser.add_argument(
                    "--" + spec_field.name.replace("_", "-"),
                    action=argparse.BooleanOptionalAction,
                    default=default,
                )
                continue
            parser.add_argument(
                "--" + spec_field.name.replace("_", "-"),
                type=_parser_for(spec_field.name, default),
                default=default,
                help=f"default: {json.dumps(default)}",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        spec = CollectionSpec(**{f.name: options[f.name] for f in fields(CollectionSpec)})
        if Collection.objects.filter(slug=spec.slug).exists():
            raise CommandError(f"a collection with the slug {spec.slug!r} already exists")
        models = Path(settings.REFERENCE_MODELS_DIR)
        probe = Collection(
            slug=spec.slug, name=spec.name, description=spec.description, chain_id=1,
            contract_address="0x" + "0" * 40,
            model_dir=spec.model_dir or str(models / "diffusion"),
            model_config_dir=spec.model_config_dir, scheduler=spec.scheduler,
            clip_dir=spec.clip_dir or str(models / "clip"),
            prompt_template=spec.prompt_template, negative_prompt=spec.negative_prompt,
            style_prompt=spec.style_prompt,
            clip_threshold=spec.clip_threshold, steps=spec.steps, guidance=spec.guidance,
            width=spec.width, height=spec.height, max_attempts=spec.max_attempts,
            max_supply=spec.max_supply, rarity=spec.rarity, trait_margin=spec.trait_margin,
            uniqueness_threshold=spec.uniqueness_threshold,
            near_duplicate_threshold=spec.near_duplicate_threshold,
            lora_adapters=spec.lora_adapters, quantization=spec.quantization,
            onnx_dir=spec.onnx_dir, publish_weights=spec.publish_weights,
            seed_delay=spec.seed_delay,
            vrf_coordinator="0x" + "0" * 40 if spec.vrf_coordinator == "local" else spec.vrf_coordinator,
            vrf_subscription_id=str(spec.vrf_subscription_id),
            vrf_key_hash="0x" + "0" * 64 if spec.vrf_coordinator == "local" else spec.vrf_key_hash,
            style_images=spec.style_images, style_images_threshold=spec.style_images_threshold,
            image=spec.image, banner_image=spec.banner_image,
        )  # fmt: skip
        try:
            # Checked before anything is sent, so a typo costs no gas.
            probe.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            raise CommandError(f"invalid collection: {exc.message_dict}") from exc
        problems = sale_spec_problems(spec)
        if problems:
            raise CommandError("invalid sale settings: " + "; ".join(problems))
        w3 = connect(options["rpc_url"])
        if not w3.is_connected():
            raise CommandError(f"no chain answers at {w3.provider.endpoint_uri}")
        try:
            key = wallets.deployer(w3.eth.chain_id).key.to_0x_hex()
            collection = deploy_collection(w3, key, spec)
        except MissingKey as exc:
            raise CommandError(str(exc)) from exc
        info = write_deployment_file(collection, rpc_url=w3.provider.endpoint_uri, extra={})
        self.stdout.write(json.dumps(info, indent=2))
