"""Which key signs for which role, and where the key comes from.

Each role (``DEPLOYER``, ``SEED_COMMITTER``, ``PUBLISHER``, ``SALES_MANAGER``) takes its key
from, in this order:

- ``<ROLE>_KEY``, a raw private key, or ``<ROLE>_KEY_FILE``, a file holding one;
- ``<ROLE>_KEYSTORE``, an encrypted JSON keystore file, unlocked by ``<ROLE>_KEYSTORE_PASSWORD``
  or ``<ROLE>_KEYSTORE_PASSWORD_FILE``;
- on the embedded chain (anvil, chain id 31337) only, anvil's well-known test accounts: #0 deploys
  and administers, #1 commits seeds, #2 publishes, #5 runs the sale.

Setting both a key and a keystore for one role is an error, not a silent choice. Keys live in
this process's memory only: never in the database, and no message or log line names one.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from eth_account import Account
from eth_account.signers.local import LocalAccount

from chain.anvil import ANVIL_ACCOUNTS
from chain.errors import MissingKey

# anvil's default mnemonic ("test test ... junk"); public knowledge, worthless off anvil.
ANVIL_KEYS = [account.private_key for account in ANVIL_ACCOUNTS]

DEPLOYER, SEED_COMMITTER, PUBLISHER = 0, 1, 2
# not #3 or #4: the tests' collectors and payees are those
SALES_MANAGER = 5


def deployer(chain_id: int) -> LocalAccount:
    """The contract admin's account on ``chain_id``."""
    return _account("DEPLOYER", DEPLOYER, chain_id)


def seed_committer(chain_id: int) -> LocalAccount:
    """The account that sends ``commitSeeds`` on ``chain_id`` (anyone may; a key of its own keeps
    the committer's gas apart from the other accounts')."""
    return _account("SEED_COMMITTER", SEED_COMMITTER, chain_id)


def publisher(chain_id: int) -> LocalAccount:
    """The account holding ``PUBLISHER_ROLE`` on ``chain_id``."""
    return _account("PUBLISHER", PUBLISHER, chain_id)


def sales_manager(chain_id: int) -> LocalAccount:
    """The account holding ``SALES_ROLE`` on ``chain_id``: the sale worker's (sales/tasks.py)."""
    return _account("SALES_MANAGER", SALES_MANAGER, chain_id)


def account_from_keystore(path: Path, password: str) -> LocalAccount:
    """Decrypt an encrypted JSON keystore (Web3 Secret Storage, as geth, clef and ``cast wallet``
    write it). Raises ``ImproperlyConfigured`` naming the file, never the password or the key."""
    return Account.from_key(_decrypt(str(path), password))


def _account(role: str, fallback: int, chain_id: int) -> LocalAccount:
    key = getattr(settings, f"{role}_KEY")
    keystore = getattr(settings, f"{role}_KEYSTORE")
    if key and keystore:
        raise ImproperlyConfigured(
            f"both {role}_KEY (or {role}_KEY_FILE) and {role}_KEYSTORE are set; keep one"
        )
    if key:
        return _from_raw_key(key, f"{role}_KEY")
    if keystore:
        password = getattr(settings, f"{role}_KEYSTORE_PASSWORD")
        if password is None:
            raise ImproperlyConfigured(
                f"{role}_KEYSTORE is set but neither {role}_KEYSTORE_PASSWORD nor "
                f"{role}_KEYSTORE_PASSWORD_FILE is"
            )
        return account_from_keystore(Path(keystore), password)
    if chain_id != settings.EMBEDDED_CHAIN_ID or settings.PRODUCTION:
        # The anvil keys are public: in production no chain id makes them the backend's keys
        # (a production chain may use 31337 too).
        raise MissingKey(
            f"no key for the {role.lower()} on chain {chain_id}: set {role}_KEY, "
            f"{role}_KEY_FILE or {role}_KEYSTORE (the anvil test keys are used only on chain "
            f"{settings.EMBEDDED_CHAIN_ID}, and never with MINT_ENV=production)"
        )
    return Account.from_key(ANVIL_KEYS[fallback])


def _from_raw_key(key: str, variable: str) -> LocalAccount:
    try:
        return Account.from_key(key.strip())
    except (ValueError, TypeError):
        # `from None`: the parser's own message may quote the value.
        raise ImproperlyConfigured(
            f"{variable} is not a private key (expected 32 bytes as 64 hex digits)"
        ) from None


@cache
def _decrypt(path: str, password: str) -> bytes:
    # scrypt takes about a second by design; decrypt each keystore once per process.
    try:
        document = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ImproperlyConfigured(f"keystore {path} cannot be read: {exc.strerror}") from None
    except ValueError:
        raise ImproperlyConfigured(f"keystore {path} is not JSON") from None
    try:
        return bytes(Account.decrypt(document, password))
    except (ValueError, TypeError, KeyError):
        raise ImproperlyConfigured(
            f"keystore {path} cannot be decrypted: wrong password, or not a keystore file"
        ) from None
