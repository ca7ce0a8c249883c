"""Real processes of the stack, started and broken on purpose: the fault tests and the soak.

A ``Fleet`` starts the listener and Dramatiq workers as subprocesses (``manage.py
listen_chain``, ``manage.py rundramatiq``) with one environment, keeps each one's log, and
kills or stops them. ``PersistentRedis`` is a redis-server of its own (never a shared one) that
keeps an append-only file, so it can be restarted with its messages, as a production broker is;
``PrivateRabbitmq`` is a RabbitMQ node of its own, for the same (a shared server is never
restarted: others' queues live there).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from mintsite.embedded_redis import start_embedded_redis

REPO = Path(__file__).resolve().parent.parent

# A dead worker's messages back on their queue within seconds, not minutes: heartbeat timeout
# 5 s, and broker maintenance (which requeues them) on every command instead of 0.1% of them.
FAST_FAILOVER = {"DRAMATIQ_HEARTBEAT_TIMEOUT": "5000", "DRAMATIQ_MAINTENANCE_CHANCE": "1000000"}


@dataclass
class PersistentRedis:
    """A redis-server on ``port`` with its append-only file in ``workdir``."""

    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.process = start_embedded_redis(self.port, self.workdir, persist=True)

    def stop(self) -> None:
        """SIGTERM: Redis writes out its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def restart(self, down_seconds: float = 2.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def snapshot(self, namespace: str) -> dict[str, int]:
        return queue_snapshot(self.client(), namespace)


def queue_snapshot(client: redis.Redis, namespace: str) -> dict[str, int]:
    """Messages in the broker by where they are, over both queues: queued (waiting in a
    queue), delayed (retries, batch waits, lease waits), in flight (fetched by a worker, not yet
    acknowledged) and dead-lettered; read as the metrics read them."""
    from mintsite.observability.metrics import queue_depths

    depths = queue_depths(client, namespace, ("render", "io")).values()
    states = {"queued": "ready", "delayed": "delayed", "in_flight": "in_flight", "dead": "dead"}
    return {name: sum(d[state] for d in depths) for name, state in states.items()}


def rabbitmq_bin_dir() -> Path:
    """The folder of RabbitMQ's own scripts (Debian: /usr/lib/rabbitmq/bin; its
    /usr/sbin/rabbitmq-server runs them as the rabbitmq user, whose files are the system
    node's)."""
    configured = os.environ.get("RABBITMQ_BIN_DIR")
    if configured:
        return Path(configured)
    debian = Path("/usr/lib/rabbitmq/bin")
    if (debian / "rabbitmq-server").exists():
        return debian
    found = shutil.which("rabbitmq-server")
    if found is None:
        raise RuntimeError(
            "rabbitmq-server is not installed (Debian: apt-get install rabbitmq-server)"
        )
    return Path(found).resolve().parent


class NodeExited(Exception):
    """The node's process ended before it took a connection; ``log_tail`` says why."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(message)
        self.log_tail = log_tail


@dataclass
class PrivateRabbitmq:
    """A RabbitMQ node of its own on 127.0.0.1:``port``: its own node name, data, logs and
    Erlang cookie under ``workdir``, none of the system node's configuration. Its queues are
    durable and the broker's messages persistent, so a restart keeps every message; the ones
    workers held come back to their queues when their connections drop."""

    port: int
    workdir: Path
    dist_port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def node(self) -> str:
        return f"mint-{self.port}@localhost"

    def _env(self) -> dict[str, str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "rabbitmq.conf"
        config.write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.workdir / "enabled_plugins").write_text("[].\n")
        return {
            **os.environ,
            "HOME": str(self.workdir),  # the Erlang cookie, this node's alone
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",  # not the system node's rabbitmq-env.conf
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.workdir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout: float = 60.0, attempts: int = 3) -> None:
        """Start the node and return once it takes an AMQP connection.

        Its Erlang distribution port is one the OS said was free; another program can take it
        before the node binds it (a client's outgoing connection draws from the same range), and
        the node then exits at once. It is tried again on a fresh port, ``attempts`` times in all.
        """
        from chain.anvil import free_port

        for attempt in range(1, attempts + 1):
            if not self.dist_port:
                self.dist_port = free_port()
            try:
                self._start_once(timeout)
                return
            except NodeExited as exited:
                if attempt == attempts or "dist_port_already_used" not in exited.log_tail:
                    raise RuntimeError(str(exited)) from None
                self.dist_port = 0  # taken meanwhile: another one

    def _start_once(self, timeout: float) -> None:
        import pika
        import pika.exceptions

        from foundation.broker_contents import rabbitmq_parameters

        log = self.workdir.parent / f"rabbitmq-{self.port}.log"
        start_at = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(rabbitmq_bin_dir() / "rabbitmq-server")],
                env=self._env(),
                cwd=self.workdir,  # where a failed boot writes its erl_crash.dump
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its Erlang processes in a group of their own
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                status = self.process.returncode
                self.process = None
                with log.open("rb") as read:
                    read.seek(start_at)
                    tail = read.read().decode(errors="replace")[-2000:]
                raise NodeExited(
                    f"rabbitmq-server exited with status {status} before it took a connection "
                    f"(distribution port {self.dist_port}); the end of {log}:\n{tail}",
                    tail,
                )
            try:
                pika.BlockingConnection(rabbitmq_parameters(self.url, 2.0)).close()
                return
            except pika.exceptions.AMQPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"RabbitMQ did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        """SIGTERM: RabbitMQ closes its connections, writes out its queues and exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def restart(self, down_seconds: float = 2.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def snapshot(self, namespace: str = "") -> dict[str, int]:
        """As :func:`queue_snapshot`, from the node itself (``rabbitmqctl list_queues``), which
        counts the messages workers hold too (AMQP cannot: foundation/broker_contents.py)."""
        done = subprocess.run(
            [str(rabbitmq_bin_dir() / "rabbitmqctl"), "-n", self.node, "list_queues", "-q",
             "--no-table-headers", "name", "messages_ready", "messages_unacknowledged"],
            env=self._env(), capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        counts = {"queued": 0, "delayed": 0, "in_flight": 0, "dead": 0}
        for line in done.stdout.splitlines():
            name, ready, held = line.split()
            if name.endswith(".XQ"):
                counts["dead"] += int(ready)
            elif name.endswith(".DQ"):
                counts["delayed"] += int(ready) + int(held)
            else:
                counts["queued"] += int(ready)
                counts["in_flight"] += int(held)
        return counts


def stack_env(
    *,
    database_url: str,
    redis_url: str,
    broker_url: str | None = None,
    namespace: str,
    rpc_url: str,
    ipfs_dir: Path,
    render_cache_dir: Path,
    **extra: str,
) -> dict[str, str]:
    """The environment of every process of one stack: its queues on ``broker_url`` (RabbitMQ
    or Redis), else on ``redis_url``, which holds the caches either way."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mintsite.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BROKER_URL": broker_url or redis_url,
        "DRAMATIQ_NAMESPACE": namespace,
        "RPC_URL": rpc_url,
        "IPFS_STORE_DIR": str(ipfs_dir),
        "RENDER_CACHE_DIR": str(render_cache_dir),
        "RENDER_DEVICE": "cpu",
        "CHAIN_POLL_INTERVAL": "0.25",
        **FAST_FAILOVER,
        **extra,
    }


@dataclass
class Fleet:
    """The processes of one stack, by name; ``logs`` holds ``<name>.log`` of each."""

    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    killed: set[str] = field(default_factory=set)

    def start(self, name: str, argv: list[str], **extra_env: str) -> subprocess.Popen:
        env = {**self.env, **extra_env}
        url = env["DATABASE_URL"]
        if url.startswith("postgres"):
            # lets a test find this process's connections in pg_stat_activity
            env["DATABASE_URL"] = f"{url}{'&' if '?' in url else '?'}application_name={name}"
        self.logs.mkdir(parents=True, exist_ok=True)
        out = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        out.close()
        self.processes[name] = process
        return process

    def start_worker(self, name: str, queues: str, threads: int, **extra_env: str) -> None:
        argv = ["rundramatiq", "--processes", "1", "--threads", str(threads), "--queues", queues]
        self.start(name, [*argv, "--worker-shutdown-timeout", "5000"], **extra_env)

    def start_listener(self, name: str = "listener", **extra_env: str) -> None:
        self.start(name, ["listen_chain"], **extra_env)

    def kill(self, name: str) -> None:
        """SIGKILL the process and its children (rundramatiq's worker processes): no cleanup,
        no requeue, no acknowledgement, as in a machine losing power."""
        process = self.processes[name]
        for child in _children(process.pid):
            os.kill(child, signal.SIGKILL)
        process.kill()
        process.wait()
        self.killed.add(name)

    def pids(self, name: str) -> set[int]:
        """The process and its descendants (rundramatiq's worker processes)."""
        pid = self.processes[name].pid
        return {pid, *_children(pid)}

    def holder_of(self, lease_owner: str) -> str | None:
        """The name of the process whose render holds a lease (``host:pid:thread:nonce``)."""
        try:
            pid = int(lease_owner.split(":")[-3])
        except (IndexError, ValueError):
            return None
        return next((n for n in self.processes if pid in self.pids(n)), None)

    def check(self) -> None:
        """Raise if a process exited that was not killed on purpose."""
        for name, process in self.processes.items():
            if name not in self.killed and process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with status {process.returncode}:\n{self.log_tail(name)}"
                )

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, name: str | None = None, chars: int = 3000) -> str:
        names = [name] if name else list(self.processes)
        return "\n".join(f"--- {n}\n{self.log(n)[-chars:]}" for n in names)

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM every process, then SIGKILL (with its children) whatever still runs ``grace``
        seconds later, all of them together. Only tests and the soak stop a fleet, after their
        checks: a render worker told to stop while it boots exits only once its warm-up is done
        (dramatiq's worker process notes the SIGTERM and boots on), and no test waits for that."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for child in _children(process.pid):
                    os.kill(child, signal.SIGKILL)
                process.kill()
                process.wait()


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc), deepest first."""
    found: list[int] = []
    try:
        direct = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, direct):
        found.extend(_children(child))
        found.append(child)
    return found
