"""``kubo``: a Kubo node's RPC API over HTTP (``/api/v0``; every call is a POST).

``add`` with ``cid-version=1&raw-leaves=true&chunker=size-262144&hash=sha2-256`` (explicit, so
a node whose ``Import.*`` config differs from the defaults still builds our DAG) and
``pin=false``; only once the node's CID matches ours does ``pin/add`` pin it, so nothing is ever
pinned under a CID we have not verified; ``block/stat`` then reads the root back.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import httpx

from ipfs.backends.config import PinningConfig
from ipfs.backends.http import RetryingHttp, json_body
from ipfs.backends.pinner import Pinner, same_cid
from ipfs.cid import canonical_cid
from ipfs.errors import BackendRejected, RemotePinFailed
from ipfs.unixfs import Block

__all__ = ["KUBO_ADD_PARAMS", "KuboPinner"]

#: The ``ipfs add`` options that make Kubo build the DAG :func:`ipfs.cid.compute_cid` computes.
KUBO_ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": "size-262144",
    "hash": "sha2-256",
    "trickle": "false",
}


def _kubo_error(response: httpx.Response) -> bool:
    """Kubo reports a command's failure as HTTP 500 with a JSON ``{"Type": "error"}`` body."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("Type") == "error"


class KuboPinner(Pinner):
    """A Kubo node through its RPC API."""

    backend = "kubo"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = RetryingHttp(
            f"{self.url}/api/v0",
            what="Kubo RPC",
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            is_answer=_kubo_error,
        )

    @classmethod
    def from_config(cls, config: PinningConfig) -> KuboPinner:
        return cls(
            config.http_url("kubo_url"),
            timeout=config.positive("timeout"),
            retries=int(config.at_least_zero("retries")),
            backoff=config.at_least_zero("retry_backoff"),
        )

    def __str__(self) -> str:
        return f"Kubo RPC at {self.url}"

    def close(self) -> None:
        self._http.close()

    def _call(self, command: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request("POST", command, op=command, **kwargs)
        if response.status_code >= 400:
            message = response.text[:300]
            if _kubo_error(response):
                message = str(response.json().get("Message", message))
            error = RemotePinFailed if response.status_code >= 500 else BackendRejected
            raise error(f"{self}: {command} failed (HTTP {response.status_code}): {message}")
        return response

    def add(self, data: bytes, *, pin: bool = False) -> str:
        """``ipfs add`` with our CID parameters; returns the CID the node reports (unchecked)."""
        response = self._call(
            "add",
            params={**KUBO_ADD_PARAMS, "pin": str(pin).lower()},
            # One file, not wrapped in a directory: its name is not part of the CID.
            files={"file": ("blob", data, "application/octet-stream")},
        )
        # The answer is newline-delimited JSON; the file's own entry is the last with a Hash.
        cid = None
        try:
            for line in response.text.splitlines():
                entry = json.loads(line) if line.strip() else None
                if isinstance(entry, dict) and "Hash" in entry:
                    cid = entry["Hash"]
        except ValueError:
            cid = None
        if cid is None:
            raise RemotePinFailed(f"{self}: add answered without a CID: {response.text[:200]!r}")
        return str(cid)

    def _store_file(self, data: bytes, cid: str) -> str:
        return self.add(data, pin=False)

    def _store_block(self, block: Block) -> str:
        """``block/put`` of a directory node as dag-pb; the CID the node reports."""
        answer = json_body(
            self._call(
                "block/put",
                params={"cid-codec": "dag-pb", "mhtype": "sha2-256", "pin": "false"},
                files={"file": ("block", block.data, "application/octet-stream")},
            ),
            str(self),
            "block/put",
        )
        return str(answer.get("Key")) if isinstance(answer, dict) else str(answer)

    def _pin_root(self, cid: str, name: str) -> str:
        return self._pin_added(cid)

    def _pin(self, data: bytes, cid: str, name: str) -> str:
        added = self.add(data, pin=False)
        self._check(cid, added)  # before pin/add: a CID we have not verified is never pinned
        return self._pin_added(cid)

    def _pin_added(self, cid: str) -> str:
        """``pin/add`` (recursive) of content the node holds, then its CID as the node sees it."""
        pins = json_body(
            self._call("pin/add", params={"arg": cid, "recursive": "true"}), str(self), "pin/add"
        )
        pinned = pins.get("Pins", []) if isinstance(pins, dict) else []
        if not any(same_cid(cid, p) for p in pinned):
            raise RemotePinFailed(f"{self}: pin/add of {cid} answered {pins!r}")
        stat = json_body(self._call("block/stat", params={"arg": cid}), str(self), "block/stat")
        return str(stat.get("Key")) if isinstance(stat, dict) else str(stat)

    def has(self, cid: str) -> bool:
        canonical_cid(cid)  # InvalidCID before any request
        response = self._http.request(
            "POST", "pin/ls", op="pin/ls", params={"arg": cid, "type": "recursive"}
        )
        if _kubo_error(response) and "not pinned" in str(response.json().get("Message")):
            return False
        if response.status_code >= 400:
            raise RemotePinFailed(f"{self}: pin/ls {cid} failed: {response.text[:300]}")
        keys = json_body(response, str(self), "pin/ls").get("Keys") or {}
        return any(same_cid(cid, key) for key in keys)

    def get(self, cid: str) -> bytes:
        canonical_cid(cid)
        return self._verified(cid, self._call("cat", params={"arg": cid}).content, str(self))

    def check(self, timeout: float) -> str:
        answer = json_body(self._call("version", tries=1, timeout=timeout), str(self), "version")
        version = answer.get("Version", "?") if isinstance(answer, dict) else "?"
        return f"kubo {version} at {self.url}"

    def public_addresses(self) -> list[str]:
        """The node's multiaddrs that a remote peer could dial (loopback and private left out)."""
        answer = json_body(self._call("id"), str(self), "id")
        return [a for a in answer.get("Addresses") or [] if _is_public_multiaddr(a)]

    def connect(self, multiaddr: str) -> None:
        """Ask the node to connect to a peer (a pinning service's delegate)."""
        self._call("swarm/connect", params={"arg": multiaddr})


def _is_public_multiaddr(multiaddr: str) -> bool:
    parts = multiaddr.strip("/").split("/")
    if len(parts) < 2:
        return False
    protocol, host = parts[0], parts[1]
    if protocol in ("dns", "dns4", "dns6", "dnsaddr"):
        return host not in ("localhost",) and not host.endswith(".local")
    if protocol in ("ip4", "ip6"):
        try:
            return ipaddress.ip_address(host).is_global
        except ValueError:
            return False
    return False
