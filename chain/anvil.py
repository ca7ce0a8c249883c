"""Start and stop a real local chain: anvil from npm ``@foundry-rs/anvil-linux-amd64``.

Used by the embedded default (``make run``) and by the test fixtures. Nothing here fakes a chain:
``start_anvil`` runs the anvil binary and returns once it answers JSON-RPC.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, NamedTuple, Self

from chain.errors import AnvilError

REPO_ROOT = Path(__file__).resolve().parent.parent
NPM_ANVIL_BIN = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

DEFAULT_STARTUP_TIMEOUT = 20.0
# An auto-picked port can be taken between the probe and anvil's bind; retry a few times.
_PORT_RETRIES = 3


class AnvilAccount(NamedTuple):
    address: str
    private_key: str


# The first accounts anvil derives from its default mnemonic
# "test test test test test test test test test test test junk"; each starts with 10000 ETH.
ANVIL_ACCOUNTS: tuple[AnvilAccount, ...] = (
    AnvilAccount(
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    ),
    AnvilAccount(
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    AnvilAccount(
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    ),
    AnvilAccount(
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
        "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    ),
    AnvilAccount(
        "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
        "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    ),
    AnvilAccount(
        "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
        "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    ),
)


def find_anvil_binary() -> str:
    """Return the anvil binary: ``$ANVIL_BIN``, else the npm package's, else ``anvil`` on PATH."""
    env_bin = os.environ.get("ANVIL_BIN")
    if env_bin:
        if not (os.path.isfile(env_bin) and os.access(env_bin, os.X_OK)):
            raise AnvilError(f"ANVIL_BIN={env_bin!r} is not an executable file")
        return env_bin
    if NPM_ANVIL_BIN.is_file() and os.access(NPM_ANVIL_BIN, os.X_OK):
        return str(NPM_ANVIL_BIN)
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    raise AnvilError(
        f"anvil not found: looked at $ANVIL_BIN, {NPM_ANVIL_BIN} and PATH. "
        f"Did you forget to run `npm install` in {REPO_ROOT}?"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now, for a server about to be started on it.

    Drawn below the range the OS takes outgoing connections' local ports from
    (``ip_local_port_range``), so no client's connection can take it before the server binds
    it, or while the server is down for a restart: CI saw a RabbitMQ node's port taken so.
    Never the same port twice in one process. Where that range leaves too little room below
    it, the OS picks (``bind`` to port 0), as it always did.
    """
    low = _ephemeral_ports()[0]
    if low - _LOWEST_PICKED >= 1000:
        for _ in range(100):
            port = _picker.randrange(_LOWEST_PICKED, low)
            if port not in _handed_out and port not in _BROWSERS_REFUSE and _bindable(host, port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_LOWEST_PICKED = 10_000  # above the registered services most machines run (5432, 6379, 5672…)
_picker = random.Random()  # seeded from os.urandom: processes started together differ
_handed_out: set[int] = set()
# Chromium's and Firefox's "unsafe ports" at or above _LOWEST_PICKED: a page served there cannot
# be loaded (ERR_UNSAFE_PORT), and the browser tests serve pages on these ports
_BROWSERS_REFUSE = frozenset({10080})


def _ephemeral_ports() -> tuple[int, int]:
    """Linux's ``ip_local_port_range``; its default where it cannot be read."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class Anvil:
    """A running anvil process. Use ``start_anvil`` to create one; ``stop()`` or ``with`` ends it."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        host: str,
        port: int,
        stderr_file: IO[bytes],
    ):
        self.process = process
        self.host = host
        self.port = port
        self._stderr_file = stderr_file
        # An anvil left behind keeps its port and memory; stop it when the interpreter exits.
        atexit.register(self.stop)

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stderr_text(self) -> str:
        """Everything anvil wrote to stderr so far."""
        self._stderr_file.flush()
        self._stderr_file.seek(0)
        return self._stderr_file.read().decode("utf-8", errors="replace")

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate anvil, wait for it, and kill it if it does not exit within ``timeout``."""
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        if not self._stderr_file.closed:
            self._stderr_file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Anvil {self.rpc_url} pid={self.process.pid}>"


def _chain_id(rpc_url: str, timeout: float) -> int | None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(
        rpc_url, data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(json.load(response)["result"], 16)
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return None


def _launch(
    binary: str,
    host: str,
    port: int,
    chain_id: int,
    block_time: float | None,
    timeout: float,
    hardfork: str | None = None,
    timestamp: int | None = None,
) -> Anvil:
    args = [binary, "--host", host, "--port", str(port), "--chain-id", str(chain_id)]
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    if hardfork is not None:
        args += ["--hardfork", hardfork]
    if timestamp is not None:
        args += ["--timestamp", str(timestamp)]
    # stdout carries one log line per RPC call; drop it. stderr goes to a file (never a pipe nobody
    # reads, which would block anvil once full) so startup errors can be reported.
    stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 -- owned and closed by Anvil.stop()
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr_file
    )
    anvil = Anvil(process, host, port, stderr_file)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = anvil.stderr_text()
            anvil.stop()
            raise AnvilError(
                f"anvil exited with code {process.returncode} on {host}:{port}: {stderr.strip()}"
            )
        answered = _chain_id(anvil.rpc_url, timeout=1.0)
        if answered is not None:
            if answered != chain_id:
                anvil.stop()
                raise AnvilError(
                    f"{anvil.rpc_url} answered chain id {answered}, expected {chain_id}"
                )
            return anvil
        time.sleep(0.05)

    stderr = anvil.stderr_text()
    anvil.stop()
    raise AnvilError(
        f"anvil did not answer eth_chainId on {anvil.rpc_url} within {timeout:.0f}s: {stderr.strip()}"
    )


def start_anvil(
    port: int | None = None,
    block_time: float | None = None,
    chain_id: int = 31337,
    host: str = "127.0.0.1",
    *,
    timeout: float = DEFAULT_STARTUP_TIMEOUT,
    hardfork: str | None = None,
    timestamp: int | None = None,
) -> Anvil:
    """Start anvil and return once it answers ``eth_chainId``.

    ``port=None`` picks a free port. ``block_time=None`` mines one block per transaction
    (automine); a number mines on that interval in seconds. ``hardfork=None`` keeps anvil's
    default (its latest fork, which has the EIP-2935 block hash history contract, as ``"prague"``
    does); ``"cancun"`` gives a chain without that contract. ``timestamp`` fixes the genesis
    block's (Unix seconds); with ``anvil_setBlockTimestampInterval`` too, every block hash is
    the same from run to run when the same transactions are sent.
    """
    binary = find_anvil_binary()
    if port is not None:
        return _launch(binary, host, port, chain_id, block_time, timeout, hardfork, timestamp)
    last_error: AnvilError | None = None
    for _ in range(_PORT_RETRIES):
        try:
            return _launch(
                binary, host, free_port(host), chain_id, block_time, timeout, hardfork, timestamp
            )
        except AnvilError as error:
            if "Address already in use" not in str(error):
                raise
            last_error = error
    assert last_error is not None
    raise last_error
