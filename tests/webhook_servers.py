"""Real TCP servers on 127.0.0.1 that answer a webhook's POST with exact bytes, at once or one
byte at a time (a receiver that trickles its answer), or not as HTTP at all."""

from __future__ import annotations

import socket
import threading
import time


class RawServer:
    """Answers every connection with ``head`` at once, then ``trickle`` one byte every
    ``interval`` seconds, then closes. Counts the requests it read."""

    def __init__(self, head: bytes, trickle: bytes = b"", interval: float = 1.0) -> None:
        self.head, self.trickle, self.interval = head, trickle, interval
        self.requests: list[bytes] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hooks"

    def _accept(self) -> None:
        while not self._stopping:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(10)
            try:
                self.requests.append(_read_request(connection))
                connection.sendall(self.head)
                for byte in self.trickle:
                    if self._stopping:
                        return
                    time.sleep(self.interval)
                    connection.sendall(bytes([byte]))
            except OSError:
                return  # the client gave up: what a trickling receiver sees

    def close(self) -> None:
        self._stopping = True
        self._socket.close()


def _read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
