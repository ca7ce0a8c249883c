"""Which key signs for which role.

The embedded chain (anvil, chain id 31337) uses anvil's well-known test accounts: #0 deploys
and administers, #1 commits seeds, #2 publishes. On any other chain the keys must be set
(``SEED_COMMITTER_KEY``, ``PUBLISHER_KEY``, or their ``*_FILE`` variants).
"""

from __future__ import annotations

from django.conf import settings
from eth_account import Account
from eth_account.signers.local import LocalAccount

from chain.anvil import ANVIL_ACCOUNTS
from chain.errors import MissingKey

# anvil's default mnemonic ("test test ... junk"); public knowledge, worthless off anvil.
ANVIL_KEYS = [account.private_key for account in ANVIL_ACCOUNTS]

DEPLOYER, SEED_COMMITTER, PUBLISHER = 0, 1, 2


def _account(configured: str | None, role: str, fallback: int, chain_id: int) -> LocalAccount:
    if configured:
        return Account.from_key(configured)
    if chain_id != settings.EMBEDDED_CHAIN_ID:
        raise MissingKey(
            f"no key for the {role} on chain {chain_id}: set {role.upper()}_KEY "
            f"or {role.upper()}_KEY_FILE (the anvil test keys are used only on chain "
            f"{settings.EMBEDDED_CHAIN_ID})"
        )
    return Account.from_key(ANVIL_KEYS[fallback])


def deployer(chain_id: int) -> LocalAccount:
    return _account(settings.DEPLOYER_KEY, "deployer", DEPLOYER, chain_id)


def seed_committer(chain_id: int) -> LocalAccount:
    return _account(settings.SEED_COMMITTER_KEY, "seed_committer", SEED_COMMITTER, chain_id)


def publisher(chain_id: int) -> LocalAccount:
    return _account(settings.PUBLISHER_KEY, "publisher", PUBLISHER, chain_id)
