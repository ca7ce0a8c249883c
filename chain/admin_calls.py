"""Transactions for the contract admin to sign, prepared with no key.

The contract's ``DEFAULT_ADMIN_ROLE`` (a multisig or a timelock, in production: docs/deploy.md)
changes what the sale worker may not: the royalty and the contract metadata (chain/royalty.py),
the payee (chain/payee.py). The backend prepares each call, encoded for the contract, and the
admin's signers send it: with a multisig's transaction builder (``to``, ``value``, ``data``) or
Foundry's ``cast``. Nothing here sends, so the web tier may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import is_address, to_checksum_address
from web3.contract import Contract

from chain.errors import ChainError
from generation.models import Collection

__all__ = ["AdminCall", "admin_call", "nonzero_address"]


@dataclass(frozen=True)
class AdminCall:
    """One transaction for the contract admin to sign (value 0)."""

    chain_id: int
    to: str  # the contract, checksummed
    function: str  # its signature
    args: tuple[Any, ...]
    data: str  # 0x calldata

    def cast_command(self) -> str:
        """The same transaction with Foundry's ``cast`` (add the signer's flags, e.g. --ledger)."""
        args = " ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in self.args)
        return f'cast send --chain {self.chain_id} {self.to} "{self.function}" {args}'

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "to": self.to,
            "value": 0,
            "function": self.function,
            "args": list(self.args),
            "data": self.data,
            "cast": self.cast_command(),
        }


def admin_call(
    collection: Collection, contract: Contract, function: str, args: tuple[Any, ...]
) -> AdminCall:
    """``function`` (its signature) with ``args``, encoded for ``contract``."""
    return AdminCall(
        chain_id=collection.chain_id,
        to=contract.address,
        function=function,
        args=args,
        data=contract.encode_abi(function.split("(")[0], args=list(args)),
    )


def nonzero_address(value: str, what: str, refused: type[ChainError]) -> str:
    """``value`` checksummed; ``refused`` naming ``what`` and the value unless it is a non-zero
    address (the contract's admin setters revert on the zero address)."""
    text = value.strip()
    if not is_address(text) or int(text, 16) == 0:
        raise refused(f"{what} {value!r} is not a non-zero address")
    return to_checksum_address(text)
