"""The sale worker's actor: the sale's on-chain controls (sales/sending.py), on the
``sales`` queue, which only the worker holding the sales key (the contract's ``SALES_ROLE``)
serves."""

from __future__ import annotations

from typing import Any

import dramatiq

from chain.tasks import CHAIN_KINDS
from generation import failures, stages
from generation.stages import SALES_QUEUE
from sales.actions import RUN_ACTOR
from sales.models import SaleAction
from sales.sending import finish, send_action


@dramatiq.actor(queue_name=SALES_QUEUE, **stages.BOOKKEEPING)
def record_sale_action_failure(message_data: dict[str, Any], retry_data: dict[str, Any]) -> None:
    """``run_sale_action`` used up its retries (the chain unreachable for minutes): the action is
    FAILED with why; the manager asks again once the chain answers."""
    action = SaleAction.objects.filter(pk=message_data["args"][0]).first()
    if action is None or action.state in (SaleAction.State.DONE, SaleAction.State.FAILED):
        return
    reason = failures.gave_up(message_data, retry_data["retries"], CHAIN_KINDS)
    finish(action, SaleAction.State.FAILED, error=reason)


@dramatiq.actor(
    actor_name=RUN_ACTOR,
    queue_name=SALES_QUEUE,
    max_retries=5,
    min_backoff=2_000,
    max_backoff=60_000,
    time_limit=10 * 60_000,
    on_retry_exhausted="record_sale_action_failure",
)
def run_sale_action(action_pk: int) -> None:
    send_action(action_pk)
