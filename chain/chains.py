"""Which RPC endpoints serve a chain."""

from __future__ import annotations

from django.conf import settings
from web3 import Web3

from chain.models import Chain
from chain.rpc import connect


def web3_for(chain_id: int) -> Web3:
    """A client for the chain's configured endpoints (settings.RPC_URL if it has no row),
    checked to serve that chain (``ChainMismatch`` otherwise)."""
    chain = Chain.objects.filter(chain_id=chain_id).first()
    return connect(chain.urls() if chain else settings.RPC_URL, chain_id=chain_id)
