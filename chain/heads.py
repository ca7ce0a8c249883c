"""The newest block a chain's confirmations allow the backend to act on."""

from __future__ import annotations

from web3 import Web3

from chain.models import Chain


def confirmed_block(w3: Web3, chain: Chain) -> tuple[int, int]:
    """(head, the newest block with the chain's confirmations): a depth below the head, or the
    node's ``safe``/``finalized`` block where the chain is configured with a tag."""
    head = w3.eth.block_number
    if chain.confirmation_tag:
        tagged = w3.eth.get_block(chain.confirmation_tag)["number"]  # type: ignore[arg-type]
        return head, min(head, tagged)
    return head, head - chain.confirmations
