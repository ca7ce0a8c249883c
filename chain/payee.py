"""Changing where a collection's proceeds go: ``setPayee``, the contract admin's call.

A withdrawal (the sale worker's ``withdraw()``) sends the proceeds to the contract's payee, which
only the contract admin changes; the sale worker's key cannot. :func:`payee_change` prepares the
call for the admin's signers (chain/admin_calls.py); the sale page offers it. It sends nothing,
so the web tier may import it.
"""

from __future__ import annotations

from web3 import Web3

from chain.admin_calls import AdminCall, admin_call, nonzero_address
from chain.contract import bind
from chain.errors import ChainError
from generation.models import Collection

__all__ = ["PayeeRefused", "check_payee", "payee_change"]


class PayeeRefused(ChainError, ValueError):
    """The payee cannot be changed as asked; the text says why. Nothing was sent."""


def check_payee(payee: str) -> str:
    """``payee`` checksummed; :class:`PayeeRefused` unless it is a non-zero address (the
    contract refuses the zero address)."""
    return nonzero_address(payee, "the payee", PayeeRefused)


def payee_change(w3: Web3, collection: Collection, payee: str) -> list[AdminCall]:
    """The admin's ``setPayee`` that sends ``collection``'s proceeds to ``payee`` from the next
    withdrawal on; empty when the contract pays it already."""
    new = check_payee(payee)
    if not collection.contract_address:
        raise PayeeRefused(f"{collection.slug} has no contract yet: deploy it first")
    contract = bind(w3, collection.contract_address)
    if contract.functions.payee().call() == new:
        return []
    return [admin_call(collection, contract, "setPayee(address)", (new,))]
