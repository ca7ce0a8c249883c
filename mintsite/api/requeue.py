"""Sending a FAILED or NEEDS_REVIEW token back through the stage that stopped it.

The same rules as the admin's retry and re-render (``generation/review.py``), for API clients:

=====================================  ===================  ==========================
the token has                          goes back to         and is sent to
=====================================  ===================  ==========================
no committed seed (commit gave up)     CONFIRMED            chain commit_seeds
a seed, no accepted image              SEED_COMMITTED       render_token (attempts go on)
an accepted image, nothing pinned      RENDERED             pin_token
pinned metadata                        PINNED               publish_pending
NEEDS_REVIEW                           NEEDS_REVIEW         rerender_token: another round
                                                            of max_attempts renders
=====================================  ===================  ==========================

A token whose on-chain seed differs from the one derived off-chain is never requeued (that is
a provenance failure, not a transient one), nor a REORGED token (its mint is gone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dramatiq
from django.db import transaction

from generation import events, stages
from generation.errors import ReviewRefused
from generation.models import Token
from generation.review import retry_stage
from mintsite.api.errors import BrokerUnavailable, NotRequeueable, TokenChanged

log = logging.getLogger(__name__)
Status = Token.Status


@dataclass(frozen=True)
class Plan:
    status: str  # what the token goes back to
    actor: str  # the actor that takes it from there
    stage: str  # the stage that stopped it, in words


def plan_for(token: Token) -> Plan:
    """Where ``token`` goes back to; raises NotRequeueable, saying why, if nowhere.

    A FAILED token goes back to the first stage whose result it lacks, decided by
    ``generation.review.retry_stage`` (the admin's retry uses the same rule). A NEEDS_REVIEW
    token gets another round of ``max_attempts`` renders, its attempt counter going on (the
    admin's re-render): attempts already rejected are deterministic and are not redone.
    """
    if token.status == Status.NEEDS_REVIEW:
        if token.collection.paused:
            raise NotRequeueable(
                f"collection {token.collection.slug} is paused; unpause it to render again"
            )
        return Plan(Status.NEEDS_REVIEW, stages.RERENDER.actor, "render (CLIP gate)")
    if token.status != Status.FAILED:
        raise NotRequeueable(
            f"token {token.token_id} is {token.status}: only FAILED or NEEDS_REVIEW tokens "
            "can be requeued"
        )
    try:
        stage = retry_stage(token)
    except ReviewRefused as exc:
        raise NotRequeueable(f"token {token.token_id} cannot be requeued: {exc}") from exc
    return Plan(stage.acts_on, stage.actor, stage.name)


def _send(plan: Plan, token: Token, by: str) -> stages.Message:
    if plan.actor == stages.RERENDER.actor:
        until = token.attempt + token.collection.max_attempts
        return stages.send(stages.RERENDER, token.pk, by, until)
    stage = next(s for s in stages.PIPELINE if s.actor == plan.actor)
    return stages.send_for(token, stage)


@dataclass(frozen=True)
class Requeued:
    token_pk: int
    previous_status: str
    status: str
    stage: str
    message: dramatiq.Message


def requeue(token_pk: int, *, by: str = "API") -> Requeued:
    """Put the token back where its failed stage starts and send that stage's actor.

    Raises NotRequeueable (with the reason), TokenChanged (it moved meanwhile) or
    BrokerUnavailable (the message could not be sent; the token is left as it was).
    """
    token = Token.objects.select_related("collection").filter(pk=token_pk).first()
    if token is None:
        raise NotRequeueable(f"no token with pk {token_pk}")
    plan = plan_for(token)
    changes: dict[str, object] = {"status": plan.status, "failure_reason": ""}
    if plan.actor == stages.PUBLISH.actor:
        changes["publish_claim"] = ""
    detail = f"requeued by {by} after {token.status} in {plan.stage}"
    with transaction.atomic():
        # Conditional: a token that moved since it was read is not sent twice.
        moved = Token.objects.filter(
            pk=token_pk, status=token.status, failure_reason=token.failure_reason
        ).update(**changes)
        if moved != 1:
            raise TokenChanged(f"token {token.token_id} changed while being requeued; try again")
        events.record([token_pk], plan.status, detail)
    # Sent after the commit, so the worker finds the token where the message says it is.
    try:
        message = _send(plan, token, by)
    except dramatiq.errors.ConnectionError as exc:
        Token.objects.filter(pk=token_pk, status=plan.status).update(
            status=token.status, failure_reason=token.failure_reason, attempt=token.attempt
        )
        events.record(
            [token_pk], token.status, f"requeue undone: the broker is unreachable ({exc})"
        )
        raise BrokerUnavailable(
            f"the task broker is unreachable ({exc}); token {token.token_id} stays {token.status}"
        ) from exc
    log.info("%s %s: %s, sent %s", token, detail, plan.status, plan.actor)
    return Requeued(token_pk, token.status, plan.status, plan.stage, message)
