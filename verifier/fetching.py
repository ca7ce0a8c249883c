"""Where the verifier's data comes from: the chain over JSON-RPC and IPFS gateways over HTTP."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import httpx
from web3 import Web3
from web3.contract import Contract

from chain.contract import bind
from verifier.errors import VerifyError

PUBLIC_GATEWAY = "https://ipfs.io"  # the last resort when no gateway of the project answers
FETCH_TIMEOUT = 30.0
RAW_BLOCK = "application/vnd.ipld.raw"


class Gateway:
    """Fetches ``<gateway>/ipfs/<cid>`` from the first of ``urls`` that serves it (each URL
    given with or without ``/ipfs``).

    Only a gateway that cannot be reached or does not answer 200 is passed over: bytes that
    come back are what the checks hash, so a gateway serving wrong bytes fails the check, it is
    not routed around. ``served`` lists the gateways that answered, in order.
    """

    def __init__(self, urls: str | Sequence[str], client: httpx.Client | None = None) -> None:
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls:
            raise VerifyError("no IPFS gateway given")
        self.bases = [url.rstrip("/").removesuffix("/ipfs") for url in urls]
        self.client = client or httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=True)
        self.served: list[str] = []

    def fetch(self, uri: str) -> bytes:
        """The content named by ``uri`` (``ipfs://<cid>`` or a bare CID), as the gateway
        serves a file."""
        return self._get(uri.removeprefix("ipfs://").split("/")[0], raw=False)

    def fetch_block(self, cid: str) -> bytes:
        """The raw block named ``cid`` (a trustless gateway's ``?format=raw``): how a folder's
        directory nodes are read, so each can be checked against its CID."""
        return self._get(cid, raw=True)

    def _get(self, cid: str, *, raw: bool) -> bytes:
        errors = []
        for base in self.bases:
            url = f"{base}/ipfs/{cid}" + ("?format=raw" if raw else "")
            headers = {"Accept": RAW_BLOCK} if raw else {}
            try:
                response = self.client.get(url, headers=headers)
            except httpx.HTTPError as exc:
                errors.append(f"cannot fetch {url}: {type(exc).__name__}: {exc}")
                continue
            if response.status_code != 200:
                errors.append(f"{url} answered HTTP {response.status_code}")
                continue
            if base not in self.served:
                self.served.append(base)
            return response.content
        raise VerifyError("; ".join(errors))


def default_gateways(project_gateway: str | None = None) -> list[str]:
    """The gateways tried when none is given: the project's own (``project_gateway``, else
    ``$IPFS_GATEWAY_URL``, else the one a running ``make run`` wrote into
    ``var/run/deployment.json``), then a public one."""
    found = project_gateway or os.environ.get("IPFS_GATEWAY_URL")
    if not found:
        var = Path(os.environ.get("MINT_VAR_DIR") or "var")
        try:
            found = json.loads((var / "run" / "deployment.json").read_text())["ipfs_gateway_url"]
        except (OSError, ValueError, KeyError, TypeError):
            found = None
    return [found, PUBLIC_GATEWAY] if found and found != PUBLIC_GATEWAY else [PUBLIC_GATEWAY]


def connect(rpc_url: str, contract: str) -> tuple[Web3, Contract, int]:
    """A Web3 on ``rpc_url``, the collection contract at ``contract`` bound with the shipped ABI,
    and the chain id; raises ``VerifyError`` when the RPC does not answer or holds no contract
    there."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": FETCH_TIMEOUT}))
    try:
        chain_id = w3.eth.chain_id
    except Exception as exc:  # web3 raises many kinds for an RPC that does not answer
        raise VerifyError(f"cannot reach the RPC at {rpc_url}: {exc}") from exc
    if not Web3.is_address(contract):
        raise VerifyError(f"{contract!r} is not an address")
    if not w3.eth.get_code(Web3.to_checksum_address(contract)):
        raise VerifyError(f"no contract at {contract} on chain {chain_id}")
    return w3, bind(w3, contract), chain_id
