"""Sending the sale's on-chain controls with the sales key: the sale worker's side.

:func:`send_action` takes a :class:`SaleAction` a manager asked for (sales/actions.py), builds
the contract call from what was recorded, and sends it from the account holding the contract's
``SALES_ROLE`` (``chain.wallets.sales_manager``) through the sender, which never sends a
transaction twice: a retried message whose first run died after signing waits for that
transaction instead. The row then
holds the transaction and DONE, or FAILED and why (a revert names the contract's custom error).
Only the worker on the ``sales`` queue runs this; the web tier cannot import it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone
from web3.contract import Contract
from web3.contract.contract import ContractFunction

from chain.chains import web3_for
from chain.contract import bind
from chain.errors import (
    ChainChanged,
    ChainMismatch,
    FeeCapExceeded,
    MissingKey,
    NonceConsumed,
    TransactionRejected,
    TransactionReverted,
    WalletCannotPay,
)
from chain.sender import send_transaction
from chain.wallets import sales_manager
from sales.models import SaleAction

log = logging.getLogger(__name__)

Kind = SaleAction.Kind
State = SaleAction.State

# Failures no retry of the same message fixes: recorded on the action at once. Anything else
# (the RPC unreachable, a receipt not confirmed in time) is raised for Dramatiq to retry; the
# sender then resumes the same transaction.
FINAL = (
    TransactionReverted,
    TransactionRejected,
    WalletCannotPay,
    FeeCapExceeded,
    MissingKey,
    NonceConsumed,
    ChainChanged,
    ChainMismatch,
)


def build_call(contract: Contract, action: SaleAction) -> ContractFunction:
    """The contract call ``action`` asks for, from its recorded parameters."""
    f = contract.functions
    p: dict[str, Any] = action.params
    match action.kind:
        case Kind.SET_PHASE:
            *numbers, root = p["phase"]
            return f.setPhase(p["position"], (*numbers, bytes.fromhex(root.removeprefix("0x"))))
        case Kind.DROP_LAST_PHASE:
            return f.dropLastPhase()
        case Kind.PAUSE:
            return f.pause()
        case Kind.UNPAUSE:
            return f.unpause()
        case Kind.SET_PRICE:
            return f.setPrice(int(p["price_wei"]))
        case Kind.AIRDROP:
            recipients = p["recipients"]
            return f.airdrop([a for a, _ in recipients], [int(q) for _, q in recipients])
        case Kind.WITHDRAW:
            return f.withdraw()
    raise ValueError(f"unknown sale action {action.kind!r}")


def send_action(action_pk: int) -> SaleAction | None:
    """Send the action's transaction and record the outcome; a finished action is left as it is."""
    with transaction.atomic():
        action = (
            SaleAction.objects.select_for_update()
            .select_related("collection")
            .filter(pk=action_pk)
            .first()
        )
        if action is None or action.state in (State.DONE, State.FAILED):
            return action
        action.state = State.SENDING
        action.save(update_fields=["state"])
    collection = action.collection
    w3 = web3_for(collection.chain_id)
    try:
        call = build_call(bind(w3, collection.contract_address), action)
        receipt = send_transaction(
            w3,
            sales_manager(collection.chain_id),
            call,
            purpose=f"{action.kind} {collection.slug}",
        )
    except FINAL as exc:
        log.warning("sale action %d (%s) failed: %s", action.pk, action.summary(), exc)
        return finish(action, State.FAILED, error=_reason(exc))
    return finish(
        action,
        State.DONE,
        tx_hash=receipt["transactionHash"].to_0x_hex(),
        block_number=int(receipt["blockNumber"]),
    )


def finish(action: SaleAction, state: str, **fields: Any) -> SaleAction:
    """Record the action's outcome."""
    for name, value in {"state": state, "finished_at": timezone.now(), **fields}.items():
        setattr(action, name, value)
    action.save()
    return action


def _reason(exc: Exception) -> str:
    if isinstance(exc, WalletCannotPay):
        return exc.public_reason("not sent")
    return str(exc)
