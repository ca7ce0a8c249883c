"""Small real HTTP servers that behave like a Kubo RPC endpoint and a pinning service.

The failures the pinning backends must survive (a node that times out, a node that names our
bytes with another CID, a service that leaves a pin queued) cannot be caused on demand with a
real Kubo or a real service, so these servers produce them, over real sockets on 127.0.0.1.
Each runs in a background thread (``http.server.ThreadingHTTPServer``) for the length of a
``with`` block and records what it was asked, so tests assert on outcomes and on traffic.

``KuboRpcServer`` computes the CIDs it answers with ``ipfs.unixfs.file_cid`` under the
parameters the request carries (like Kubo: without ``cid-version=1`` it answers CIDv0 with
dag-pb leaves); that function itself is checked against the real Kubo in tests/test_ipfs.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from multiformats import CID, multihash

from ipfs.backends.kubo import KuboPinner
from ipfs.backends.pinning_service import PinningServicePinner
from ipfs.unixfs import decode_pb_node, file_cid

KUBO_VERSION = "0.39.0"
PEER_ID = "12D3KooWEmu1atedKuboNodeForTheTestSuite"
#: Reported by ``id``: only the DNS one is public, so only it may go into ``origins``.
KUBO_ADDRESSES = [
    f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER_ID}",
    f"/ip4/10.1.2.3/tcp/4001/p2p/{PEER_ID}",
    f"/dns4/provider.example/tcp/4001/p2p/{PEER_ID}",
]
DELEGATE = "/dns4/delegate.example/tcp/4001/p2p/12D3KooWServiceDelegateOfTheTestSuite"
HANG_SECONDS = 5.0  # far beyond the clients' test timeouts; the server stops sooner on exit


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], owner: Any) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.owner = owner


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; don't wait 40 ms

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler], owner: Any) -> Iterator[str]:
    server = _Server(handler, owner)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        owner.stopping.set()  # hanging handlers return at once
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- Kubo RPC ------------------------------------------------------------------------------------


def _multipart_files(content_type: str, body: bytes) -> list[bytes]:
    """The part bodies of a multipart/form-data request (enough for ``ipfs add``)."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        _headers, _, payload = chunk.partition(b"\r\n\r\n")
        parts.append(payload.removesuffix(b"\r\n"))
    return parts


@dataclass
class KuboRpcServer:
    """A Kubo RPC endpoint (``/api/v0``) with a chosen behaviour.

    ``pins``: adds, pins and serves content correctly. ``wrong-cid``: like a node that ignores
    ``raw-leaves`` (its add answers a dag-pb CID). ``ignores-chunker``: like a node whose
    config overrides the request's ``chunker`` with ``import_config``'s ``UnixFSChunker``. ``times-out``: the first ``hang_first``
    requests (every request when None) get no answer within any test timeout, later ones are
    served correctly. ``corrupts``: stores and pins correctly but ``cat`` returns altered bytes.
    """

    behaviour: str = "pins"
    hang_first: int | None = None
    version: str = KUBO_VERSION
    import_config: dict[str, Any] = field(default_factory=dict)  # what `config Import` shows
    files: dict[str, bytes] = field(default_factory=dict)  # CID -> content, added or not pinned
    blocks: dict[str, bytes] = field(default_factory=dict)  # CID -> directory node (block/put)
    pins: set[str] = field(default_factory=set)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    connected: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def calls_to(self, command: str) -> int:
        return sum(1 for name, _ in self.calls if name == command)

    @contextmanager
    def running(self) -> Iterator[KuboRpcServer]:
        with _serving(_KuboHandler, self) as url:
            self.url = url
            yield self


class _KuboHandler(_Handler):
    def do_GET(self) -> None:
        self._json(405, {"Message": "405 - Method Not Allowed", "Code": 0, "Type": "error"})

    def do_POST(self) -> None:
        kubo: KuboRpcServer = self.server.owner
        split = urlsplit(self.path)
        command = split.path.removeprefix("/api/v0/")
        params = {k: v[-1] for k, v in parse_qs(split.query).items()}
        body = self._body()
        with kubo.lock:
            kubo.calls.append((command, params))
            number = len(kubo.calls)
        if kubo.behaviour == "times-out" and (kubo.hang_first is None or number <= kubo.hang_first):
            kubo.stopping.wait(HANG_SECONDS)
            return  # the client has given up long ago; answer nothing
        handler = getattr(self, "_" + command.replace("/", "_"), None)
        if handler is None:
            self._error(404, f"unknown command {command!r}")
            return
        handler(kubo, params, body)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"Message": message, "Code": 0, "Type": "error"})

    def _add(self, kubo: KuboRpcServer, params: dict[str, str], body: bytes) -> None:
        (data,) = _multipart_files(self.headers["Content-Type"], body)
        version = int(params.get("cid-version", "0"))
        raw_leaves = params.get("raw-leaves", "true" if version == 1 else "false") == "true"
        if kubo.behaviour == "wrong-cid":
            raw_leaves = False
        chunker = params.get("chunker", "size-262144")
        if kubo.behaviour == "ignores-chunker":
            chunker = kubo.import_config.get("UnixFSChunker") or chunker
        chunk_size = int(chunker.removeprefix("size-"))
        # Kubo before 0.35 has no max-file-links and ignores it (unknown options are dropped)
        max_links = int(params.get("max-file-links", "174"))
        if tuple(int(p) for p in kubo.version.split(".")[:2]) < (0, 35):
            max_links = 174
        cid = str(
            file_cid(
                data,
                raw_leaves=raw_leaves,
                cid_version=version,
                chunk_size=chunk_size,
                max_links=max_links,
            )
        )
        if params.get("only-hash") == "true":
            self._send(200, json.dumps({"Name": "blob", "Hash": cid}).encode())
            return
        with kubo.lock:
            kubo.files[cid] = data
            if params.get("pin", "true") == "true":
                kubo.pins.add(cid)
        self._send(200, json.dumps({"Name": "blob", "Hash": cid, "Size": str(len(data))}).encode())

    def _block_put(self, kubo: KuboRpcServer, params: dict[str, str], body: bytes) -> None:
        (data,) = _multipart_files(self.headers["Content-Type"], body)
        codec = params.get("cid-codec", "raw")
        digest = multihash.wrap(hashlib.sha256(data).digest(), params.get("mhtype", "sha2-256"))
        cid = str(CID("base32", 1, codec, digest))
        with kubo.lock:
            kubo.blocks[cid] = data
        self._json(200, {"Key": cid, "Size": len(data)})

    def _missing_below(self, kubo: KuboRpcServer, cid: str) -> str | None:
        """The first CID below ``cid`` the node lacks (a recursive pin needs them all)."""
        if cid in kubo.files:
            return None
        if cid not in kubo.blocks:
            return cid
        for link in decode_pb_node(kubo.blocks[cid]).links:
            missing = self._missing_below(kubo, str(link.hash))
            if missing is not None:
                return missing
        return None

    def _pin_add(self, kubo: KuboRpcServer, params: dict[str, str], body: bytes) -> None:
        cid = params["arg"]
        missing = self._missing_below(kubo, cid)
        if missing is not None:
            self._error(500, f"pin: merkledag: not found ({missing})")
            return
        with kubo.lock:
            kubo.pins.add(cid)
        self._json(200, {"Pins": [cid]})

    def _pin_ls(self, kubo: KuboRpcServer, params: dict[str, str], body: bytes) -> None:
        cid = params["arg"]
        if cid not in kubo.pins:
            self._error(500, f"path '{cid}' is not pinned")
            return
        self._json(200, {"Keys": {cid: {"Type": "recursive"}}})

    def _block_stat(self, kubo: KuboRpcServer, params: dict[str, str], body: bytes) -> None:
        cid = params["arg"]
        if cid in kubo.blocks:
            self._json(200, {"Key": cid, "Size": len(kubo.blocks[cid])})
            return
        if cid not in kubo.files:
            self._error(500, "block was not found locally (offline): ipld: could not find node")
            return
        self._json(200, {"Key": cid, "Size": min(len(kubo.files[cid]), 262144)})

    def _block_get(self, kubo: KuboRpcServer, params: dict[str, str], body: bytes) -> None:
        block = kubo.blocks.get(params["arg"])
        if block is None:
            self._error(500, "block was not found locally (offline): ipld: could not find node")
            return
        self._send(200, block, "text/plain")

    def _cat(self, kubo: KuboRpcServer, params: dict[str, str], body: bytes) -> None:
        data = kubo.files.get(params["arg"])
        if data is None:
            self._error(500, "ipld: could not find node")
            return
        if kubo.behaviour == "corrupts":
            data = data[:-1] + bytes([data[-1] ^ 1])
        self._send(200, data, "text/plain")

    def _version(self, kubo: KuboRpcServer, params: dict[str, str], body: bytes) -> None:
        self._json(
            200, {"Version": kubo.version, "Commit": "", "Repo": "15", "System": "amd64/linux"}
        )

    def _config(self, kubo: KuboRpcServer, params: dict[str, str], body: bytes) -> None:
        if params.get("arg") != "Import":
            self._error(500, f"failed to get config value: {params.get('arg')!r}")
            return
        self._json(200, {"Key": "Import", "Value": kubo.import_config})

    def _id(self, kubo: KuboRpcServer, params: dict[str, str], body: bytes) -> None:
        self._json(200, {"ID": PEER_ID, "Addresses": KUBO_ADDRESSES})

    def _swarm_connect(self, kubo: KuboRpcServer, params: dict[str, str], body: bytes) -> None:
        with kubo.lock:
            kubo.connected.append(params["arg"])
        self._json(200, {"Strings": [f"connect {params['arg']} success"]})


# --- IPFS Pinning Service API --------------------------------------------------------------------


@dataclass
class PinningServiceServer:
    """An IPFS Pinning Service API endpoint with a chosen behaviour.

    ``pins``: a request goes queued → pinning → pinned over ``polls_to_pin`` status reads.
    ``stuck``: every request stays ``queued``. ``stuck-then-pins``: the first request stays
    queued, later ones pin. ``fails``: requests end ``failed``. ``wrong-cid``: its PinStatus
    names another CID than the one requested.
    """

    behaviour: str = "pins"
    token: str = "test-token"
    polls_to_pin: int = 2
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def count(self, method: str, path: str = "/pins") -> int:
        return sum(1 for m, p in self.log if m == method and p == path)

    @contextmanager
    def running(self) -> Iterator[PinningServiceServer]:
        with _serving(_PinningServiceHandler, self) as url:
            self.url = url
            yield self


class _PinningServiceHandler(_Handler):
    def _service(self) -> tuple[PinningServiceServer, str, dict[str, str]] | None:
        service: PinningServiceServer = self.server.owner
        split = urlsplit(self.path)
        with service.lock:
            service.log.append((self.command, split.path))
        if self.headers.get("Authorization") != f"Bearer {service.token}":
            self._json(401, {"error": {"reason": "UNAUTHORIZED", "details": "bad access token"}})
            return None
        return service, split.path, {k: v[-1] for k, v in parse_qs(split.query).items()}

    def _pin_status(self, service: PinningServiceServer, request: dict[str, Any]) -> Any:
        cid = request["cid"]
        if service.behaviour == "wrong-cid":
            cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        return {
            "requestid": request["requestid"],
            "status": request["status"],
            "created": "2026-01-01T00:00:00Z",
            "pin": {"cid": cid, "name": request["name"], "origins": request["origins"]},
            "delegates": [DELEGATE],
            "info": {"status_details": request["status"]},
        }

    def do_GET(self) -> None:
        found = self._service()
        if found is None:
            return
        service, path, query = found
        if path == "/pins":
            cids = set(query.get("cid", "").split(",")) - {""}
            statuses = set(query.get("status", "pinned").split(","))
            with service.lock:
                results = [
                    self._pin_status(service, r)
                    for r in service.requests.values()
                    if (not cids or r["cid"] in cids) and r["status"] in statuses
                ]
            self._json(200, {"count": len(results), "results": results})
            return
        requestid = path.removeprefix("/pins/")
        with service.lock:
            request = service.requests.get(requestid)
            if request is None:
                self._json(404, {"error": {"reason": "NOT_FOUND", "details": requestid}})
                return
            self._advance(service, request)
            status = self._pin_status(service, request)
        self._json(200, status)

    @staticmethod
    def _advance(service: PinningServiceServer, request: dict[str, Any]) -> None:
        request["polls"] += 1
        stuck = service.behaviour == "stuck" or (
            service.behaviour == "stuck-then-pins" and request["requestid"] == "1"
        )
        if stuck or request["status"] not in ("queued", "pinning"):
            return
        if service.behaviour == "fails":
            request["status"] = "failed"
        elif request["polls"] >= service.polls_to_pin:
            request["status"] = "pinned"
        else:
            request["status"] = "pinning"

    def do_POST(self) -> None:
        found = self._service()
        if found is None:
            return
        service, path, _ = found
        body = json.loads(self._body() or b"{}")
        if path != "/pins" or "cid" not in body:
            self._json(400, {"error": {"reason": "BAD_REQUEST", "details": "cid is required"}})
            return
        with service.lock:
            requestid = str(next(service._ids))
            request = {
                "requestid": requestid,
                "cid": body["cid"],
                "name": body.get("name"),
                "origins": body.get("origins", []),
                "status": "queued",
                "polls": 0,
            }
            service.requests[requestid] = request
            status = self._pin_status(service, request)
        self._json(202, status)

    def do_DELETE(self) -> None:
        found = self._service()
        if found is None:
            return
        service, path, _ = found
        with service.lock:
            removed = service.requests.pop(path.removeprefix("/pins/"), None)
        if removed is None:
            self._json(404, {"error": {"reason": "NOT_FOUND", "details": path}})
            return
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


# --- the clients, with timeouts short enough for the failure tests -------------------------------

# Short enough to keep the failure tests quick, long enough for a loaded CI machine.
TIMEOUT = 0.3
BACKOFF = 0.01


def kubo_pinner(server: KuboRpcServer, retries: int = 2) -> KuboPinner:
    return KuboPinner(server.url, timeout=TIMEOUT, retries=retries, backoff=BACKOFF)


def service_pinner(
    service: PinningServiceServer,
    kubo: KuboRpcServer,
    *,
    retries: int = 2,
    deadline: float = 2.0,
    token: str | None = None,
) -> PinningServicePinner:
    return PinningServicePinner(
        service.url,
        token or service.token,
        provider=kubo_pinner(kubo),
        deadline=deadline,
        poll_interval=0.02,
        timeout=TIMEOUT,
        retries=retries,
        backoff=BACKOFF,
    )
