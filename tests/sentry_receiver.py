"""A small Sentry ingestion endpoint on 127.0.0.1: keeps every envelope the SDK sends it.

``SENTRY_DSN=receiver.dsn`` points a process at it. An envelope is newline-separated JSON: a
header line, then per item a header line (with the payload's ``length``, or none: the payload
runs to the next newline) and its payload; an error report is an item of type ``event``.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import brotli

PROJECT_ID = 42
PUBLIC_KEY = "0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Envelope:
    raw: bytes  # as sent, decompressed
    header: dict[str, Any]
    items: list[tuple[dict[str, Any], bytes]]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for header, payload in self.items if header["type"] == "event"]


def parse_envelope(raw: bytes) -> Envelope:
    header_line, _, rest = raw.partition(b"\n")
    items = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item = json.loads(item_line)
        if item.get("length") is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[: item["length"]], rest[item["length"] :].removeprefix(b"\n")
        items.append((item, payload))
    return Envelope(raw, json.loads(header_line), items)


class SentryReceiver:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "br":
                    body = brotli.decompress(body)
                receiver.paths.append(self.path)
                receiver.envelopes.append(parse_envelope(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def dsn(self) -> str:
        return f"http://{PUBLIC_KEY}@127.0.0.1:{self._server.server_address[1]}/{PROJECT_ID}"

    def events(self) -> list[dict[str, Any]]:
        return [event for envelope in self.envelopes for event in envelope.events()]

    @contextmanager
    def running(self) -> Iterator[SentryReceiver]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
