"""``manage.py verify_token --rpc URL --contract ADDR --token N``: the ``mintverify`` checks.

The same code as the ``mintverify`` console script (the ``verifier`` package): it reads the
chain, the IPFS gateway and the optional weights, never this project's database. The gateway
defaults to this deployment's own (``IPFS_GATEWAY_URL``), then a public one.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from verifier import cli


class Command(BaseCommand):
    help = cli.DESCRIPTION

    def add_arguments(self, parser: Any) -> None:
        cli.add_arguments(parser, project_gateway=settings.IPFS_GATEWAY_URL)

    def handle(self, *args: Any, **options: Any) -> None:
        names = {a.dest for a in cli.parser()._actions if a.dest != "help"}
        namespace = argparse.Namespace(**{name: options[name] for name in names})
        namespace.default_gateways = options["default_gateways"]
        status = cli.run(namespace, out=self.stdout)
        if status == 1:
            raise CommandError("verification failed: see the FAIL lines above", returncode=1)
        if status:
            raise CommandError("verification could not run (see the error above)", returncode=2)
