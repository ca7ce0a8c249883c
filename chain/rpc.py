"""Connecting to the chain."""

from __future__ import annotations

from django.conf import settings
from web3 import Web3


def connect(rpc_url: str | None = None, *, timeout: float = 30.0) -> Web3:
    url = rpc_url or settings.RPC_URL
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
