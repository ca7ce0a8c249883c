"""Asking for the sale's on-chain controls, from the admin, with no key.

Each function checks what a manager asked for, records it as a :class:`SaleAction` (QUEUED) and,
once that row is committed, sends it by name to the sale worker's queue (``sales``):
sales/tasks.py signs and sends it there with the sales key (the contract's ``SALES_ROLE``)
through the sender. This
module holds no key and sends no transaction, so the web tier may import it (an import-linter
contract keeps the web tier away from ``chain.wallets``, ``chain.sender`` and ``sales.tasks``).

Every refusal is a :class:`SaleActionRefused` whose text says what is wrong; nothing is recorded
or sent then.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from eth_utils import is_address, to_checksum_address

from generation.models import Collection
from generation.stages import SALES_QUEUE, send_by_name
from sales.errors import SalesError
from sales.models import MAX_WEI, SaleAction, SalePhase

RUN_ACTOR = "run_sale_action"
# One airdrop transaction's recipients: the contract loops over them, so a block's gas bounds it.
MAX_AIRDROP_RECIPIENTS = 200

Kind = SaleAction.Kind
State = SaleAction.State


class SaleActionRefused(SalesError, ValueError):
    """A sale action that cannot be asked for as it is; the text says why. Nothing was recorded."""


def request(
    collection: Collection,
    kind: str,
    *,
    params: dict[str, Any] | None = None,
    phase: SalePhase | None = None,
    by: str = "",
) -> SaleAction:
    """Record the action and send it to the sale worker once the row is committed."""
    if not collection.contract_address:
        raise SaleActionRefused(f"{collection.slug} has no contract yet: deploy it first")
    action = SaleAction.objects.create(
        collection=collection, kind=kind, params=params or {}, phase=phase, requested_by=by
    )
    transaction.on_commit(lambda: send_by_name(RUN_ACTOR, SALES_QUEUE, (action.pk,)))
    return action


def schedule_phase(phase: SalePhase, *, by: str = "") -> SaleAction:
    """``setPhase(position, phase)``: add the phase on-chain, or replace it before it starts."""
    try:
        phase.full_clean()
    except ValidationError as exc:
        raise SaleActionRefused(f"{phase}: {_first_messages(exc)}") from None
    now = timezone.now()
    if phase.ends_at <= now:
        raise SaleActionRefused(
            f"{phase} ended at {phase.ends_at:%Y-%m-%d %H:%M} UTC: nothing to sell"
        )
    scheduled = phase.actions.filter(kind=Kind.SET_PHASE, state=State.DONE).exists()
    if scheduled and phase.starts_at <= now:
        raise SaleActionRefused(f"{phase} has started: the contract keeps a started phase as it is")
    # the contract appends phases in order: every earlier one must be there, or on its way
    earlier = SalePhase.objects.filter(collection=phase.collection, position__lt=phase.position)
    positions = set(earlier.values_list("position", flat=True))
    scheduled_positions = set(
        SaleAction.objects.filter(phase__in=earlier, kind=Kind.SET_PHASE)
        .exclude(state=State.FAILED)
        .values_list("phase__position", flat=True)
    )
    missing = sorted(set(range(phase.position)) - (positions & scheduled_positions))
    if missing:
        raise SaleActionRefused(
            f"{phase}: positions run from 0 without gaps, each scheduled in turn; schedule "
            f"phase {missing[0]} first"
        )
    struct = phase.as_struct()
    params = {
        "position": phase.position,
        "name": phase.name,
        "phase": [*struct[:7], "0x" + struct[7].hex()],
    }
    return request(phase.collection, Kind.SET_PHASE, params=params, phase=phase, by=by)


def drop_last_phase(collection: Collection, *, by: str = "") -> SaleAction:
    """``dropLastPhase()``: remove the last phase on-chain before it starts."""
    return request(collection, Kind.DROP_LAST_PHASE, by=by)


def pause_minting(collection: Collection, *, by: str = "") -> SaleAction:
    """``pause()``: the contract refuses every mint until unpaused (airdrops still work)."""
    return request(collection, Kind.PAUSE, by=by)


def unpause_minting(collection: Collection, *, by: str = "") -> SaleAction:
    """``unpause()``."""
    return request(collection, Kind.UNPAUSE, by=by)


def withdraw(collection: Collection, *, by: str = "") -> SaleAction:
    """``withdraw()``: the proceeds, less what auction buyers may still claim, to the payee."""
    return request(collection, Kind.WITHDRAW, by=by)


def set_price(
    collection: Collection, price_wei: int | Decimal | str, *, by: str = ""
) -> SaleAction:
    """``setPrice(price)``: the base price, which sells while no phase is scheduled."""
    try:
        price = Decimal(str(price_wei))
    except ArithmeticError:
        raise SaleActionRefused(f"the price {price_wei!r} is not a number of wei") from None
    if price != price.to_integral_value() or not 0 <= price <= MAX_WEI:
        raise SaleActionRefused(
            f"the price must be a whole number of wei from 0 to {MAX_WEI}, not {price_wei}"
        )
    return request(collection, Kind.SET_PRICE, params={"price_wei": str(int(price))}, by=by)


def airdrop(
    collection: Collection, recipients: Sequence[tuple[str, int]], *, by: str = ""
) -> SaleAction:
    """``airdrop(addresses, quantities)``: reserved tokens to each address (the contract checks
    the reserve and refuses what exceeds it)."""
    if not recipients:
        raise SaleActionRefused("an airdrop needs at least one address")
    if len(recipients) > MAX_AIRDROP_RECIPIENTS:
        raise SaleActionRefused(
            f"{len(recipients)} addresses in one airdrop; at most {MAX_AIRDROP_RECIPIENTS} a "
            "transaction: split the list"
        )
    checked = []
    for address, quantity in recipients:
        if not is_address(address):
            raise SaleActionRefused(f"{address!r} is not an Ethereum address")
        if not isinstance(quantity, int) or quantity < 1:
            raise SaleActionRefused(f"{address}: the quantity must be a whole number from 1")
        checked.append([to_checksum_address(address), quantity])
    return request(collection, Kind.AIRDROP, params={"recipients": checked}, by=by)


def _first_messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(str(m) for m in errors[0].messages)}"
            for field, errors in exc.error_dict.items()
        )
    return "; ".join(exc.messages)
