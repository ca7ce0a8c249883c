"""``kubo``: a Kubo node's RPC API over HTTP (``/api/v0``; every call is a POST).

``add`` with the CID profile's options (``cid-version=1&raw-leaves=true&chunker=size-…&hash=
sha2-256&trickle=false&max-file-links=…``: explicit, so a node whose ``Import.*`` config
differs still builds our DAG) and ``pin=false``; only once the node's CID matches ours does
``pin/add`` pin it, so nothing is ever pinned under a CID we have not verified; ``block/stat``
then reads the root back.

``check`` (``/readyz``) reads the node's version and ``Import`` config, and, once per version
and config, has the node hash a probe under each profile (``only-hash``): a node too old for
``max-file-links`` (Kubo 0.35) or one whose settings override the request's options fails it.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import httpx

from ipfs.backends.config import PinningConfig
from ipfs.backends.http import RetryingHttp, json_body
from ipfs.backends.pinner import Pinner, same_cid
from ipfs.cid import canonical_cid, compute_cid
from ipfs.errors import BackendRejected, IncompatibleNode, RemotePinFailed
from ipfs.profiles import LEGACY, PROFILES, CidProfile
from ipfs.unixfs import Block

__all__ = ["KUBO_ADD_PARAMS", "MAX_FILE_LINKS_SINCE", "KuboPinner", "kubo_version"]

#: The ``ipfs add`` options that make Kubo build the legacy profile's DAG.
KUBO_ADD_PARAMS = LEGACY.kubo_add_params()
#: The first Kubo whose ``add`` takes ``max-file-links``; older ones ignore the option (go-ipfs-
#: cmds drops unknown options) and always link 174 children per node.
MAX_FILE_LINKS_SINCE = (0, 35)
#: One byte over the legacy chunk: a dag-pb root of two leaves under ``legacy``, one raw block
#: under ``unixfs-v1-2025``, so the probe tells whether the node honours the chunker asked for.
_PROBE = bytes(range(256)) * 1024 + b"!"


def kubo_version(text: str) -> tuple[int, ...]:
    """``"0.35.0-rc1"`` → ``(0, 35, 0)``; unparsable parts count as 0."""
    numbers = []
    for part in text.split("-")[0].split(".")[:3]:
        numbers.append(int(part) if part.isdigit() else 0)
    return tuple(numbers)


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
        # (version, Import config) pairs whose probe passed: the probe runs once per change
        self._probed: set[tuple[str, str]] = set()

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

    def add(
        self,
        data: bytes,
        *,
        pin: bool = False,
        profile: CidProfile = LEGACY,
        only_hash: bool = False,
        timeout: float | None = None,
    ) -> str:
        """``ipfs add`` with ``profile``'s options; returns the CID the node reports
        (unchecked). ``only_hash`` computes the CID without storing anything."""
        params = {**profile.kubo_add_params(), "pin": str(pin).lower()}
        if only_hash:
            params["only-hash"] = "true"
        extra: dict[str, Any] = {} if timeout is None else {"tries": 1, "timeout": timeout}
        response = self._call(
            "add",
            params=params,
            **extra,
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

    def _store_file(self, data: bytes, cid: str, profile: CidProfile) -> str:
        return self.add(data, pin=False, profile=profile)

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

    def _pin(self, data: bytes, cid: str, name: str, profile: CidProfile) -> str:
        added = self.add(data, pin=False, profile=profile)
        # before pin/add: a CID we have not verified is never pinned
        self._check(cid, added, profile)
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

    def get_block(self, cid: str) -> bytes:
        canonical_cid(cid)
        return self._call("block/get", params={"arg": cid}).content

    def check(self, timeout: float) -> str:
        """The node answers, is recent enough for every profile's options, and builds each
        profile's CID for the probe (once per version and ``Import`` config)."""
        answer = json_body(self._call("version", tries=1, timeout=timeout), str(self), "version")
        version = str(answer.get("Version", "?")) if isinstance(answer, dict) else "?"
        settings = self.import_settings(timeout)
        if kubo_version(version) < MAX_FILE_LINKS_SINCE:
            raise IncompatibleNode(
                f"{self}: Kubo {version} ignores max-file-links (Kubo "
                f"{'.'.join(map(str, MAX_FILE_LINKS_SINCE))} added it) and always links 174 "
                "children per node, so files of over 174 chunks under the unixfs-v1-2025 "
                "profile would get other CIDs; upgrade Kubo"
            )
        key = (version, json.dumps(settings, sort_keys=True))
        if key not in self._probed:
            for profile in PROFILES.values():
                expected = compute_cid(_PROBE, profile)
                got = self.add(_PROBE, profile=profile, only_hash=True, timeout=timeout)
                if not same_cid(expected, got):
                    raise IncompatibleNode(
                        f"{self}: asked for the {profile} profile, Kubo {version} hashes a "
                        f"{len(_PROBE)}-byte probe to {got}, not {expected}: its import "
                        f"settings override the request's options (Import: "
                        f"{_summary(settings)})"
                    )
            self._probed.add(key)
        return (
            f"kubo {version} at {self.url}, import settings {_summary(settings)} "
            "(each add states its collection's profile)"
        )

    def import_settings(self, timeout: float) -> dict[str, Any]:
        """The node's ``Import`` config (``null`` values are Kubo's defaults); empty for a
        node that has none (Kubo before 0.29)."""
        response = self._http.request(
            "POST", "config", op="config", tries=1, timeout=timeout, params={"arg": "Import"}
        )
        if _kubo_error(response):
            return {}
        answer = json_body(response, str(self), "config")
        value = answer.get("Value") if isinstance(answer, dict) else None
        return dict(value) if isinstance(value, dict) else {}

    def public_addresses(self) -> list[str]:
        """The node's multiaddrs that a remote peer could dial (loopback and private left out)."""
        answer = json_body(self._call("id"), str(self), "id")
        return [a for a in answer.get("Addresses") or [] if _is_public_multiaddr(a)]

    def connect(self, multiaddr: str) -> None:
        """Ask the node to connect to a peer (a pinning service's delegate)."""
        self._call("swarm/connect", params={"arg": multiaddr})


def _summary(settings: dict[str, Any]) -> str:
    """The node's own import settings in words: a known profile's name, or those set."""
    chosen = {k: v for k, v in settings.items() if v is not None}
    for profile in PROFILES.values():
        wanted = {
            "CidVersion": 1,
            "UnixFSRawLeaves": True,
            "UnixFSChunker": profile.chunker,
            "UnixFSFileMaxLinks": profile.max_links,
        }
        if all(chosen.get(k) == v for k, v in wanted.items()):
            return profile.name
    if not chosen:
        return "Kubo's defaults"
    return ", ".join(f"{k}={v}" for k, v in sorted(chosen.items()))


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
