"""``manage.py verify_token --rpc URL --contract ADDR --token N``: the ``mintverify`` checks.

The same code as the ``mintverify`` console script (generation/verify.py): it reads the chain,
the IPFS gateway and the optional weights, never this project's database. The gateway defaults
to this deployment's own (``IPFS_GATEWAY_URL``), then a public one.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation import verify


class Command(BaseCommand):
    help = verify.DESCRIPTION

    def add_arguments(self, parser: Any) -> None:
        verify.add_arguments(parser, project_gateway=settings.IPFS_GATEWAY_URL)

    def handle(self, *args: Any, **options: Any) -> None:
        names = {a.dest for a in verify.parser()._actions if a.dest != "help"}
        namespace = argparse.Namespace(**{name: options[name] for name in names})
        namespace.default_gateways = options["default_gateways"]
        status = verify.run(namespace, out=self.stdout)
        if status == 1:
            raise CommandError("verification failed: see the FAIL lines above", returncode=1)
        if status:
            raise CommandError("verification could not run (see the error above)", returncode=2)
