"""``manage.py run_stack`` (what ``make run`` calls): the whole stack on embedded defaults.

Starts what is not configured (anvil with the reference world's collection deployed unless
RPC_URL is set, the embedded broker unless REDIS_URL is set), migrates the database, then runs
the web server, the chain listener and the Dramatiq workers until Ctrl-C or SIGTERM, and stops
all it started. The embedded collection is the reference world's (chain.deployment
.reference_world_spec): its trained models, rarity table, style images and calibrated gate.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from chain.anvil import Anvil, start_anvil
from chain.deployment import (
    deploy_collection,
    forget_chain,
    reference_world_spec,
    write_deployment_file,
)
from chain.errors import AnvilError
from chain.rpc import connect, redact_url
from chain.wallets import deployer
from generation.models import Collection
from generation.stages import IO_QUEUE, RENDER_QUEUE, SALES_QUEUE, WEBHOOK_QUEUE
from mintsite.embedded_redis import EmbeddedRedisError, port_is_free, start_embedded_redis

EMBEDDED_RPC_PORT = 8545


class Command(BaseCommand):
    help = "Run the whole stack (chain, broker, web, listener, workers) until Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--block-time", type=float, default=1.0, help="embedded anvil")
        parser.add_argument("--web-addr", default="127.0.0.1:8000")
        parser.add_argument(
            "--render-threads",
            type=int,
            default=settings.RENDER_BATCH_SIZE,
            help="render worker threads; as many renders can share one batched pipeline call",
        )
        parser.add_argument("--io-threads", type=int, default=4)
        parser.add_argument(
            "--webhook-threads",
            type=int,
            default=4,
            help="webhook worker threads: deliveries at once, each up to WEBHOOK_TIMEOUT",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stopping = False
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.anvil: Anvil | None = None
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._run(options)
        except (AnvilError, EmbeddedRedisError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            self._stop_all()

    def _run(self, options: dict[str, Any]) -> None:
        env = dict(os.environ)
        call_command("build_reference_models", verbosity=0)
        call_command("migrate", interactive=False, verbosity=0)
        _collect_static()

        on_rabbitmq = settings.BROKER_KIND == "rabbitmq"
        # a redis:// BROKER_URL is the Redis too (mintsite/settings.py)
        if not os.environ.get("REDIS_URL") and (on_rabbitmq or not os.environ.get("BROKER_URL")):
            port = settings.EMBEDDED_REDIS_PORT
            self.children.append(
                ("redis", start_embedded_redis(port, Path(settings.RUN_DIR) / "redis"))
            )
            serves = "rate limits, notices and cache" if on_rabbitmq else "queues and cache"
            self.stdout.write(f"redis: embedded redis-server on 127.0.0.1:{port} ({serves})")
        if on_rabbitmq:
            self.stdout.write(f"broker: RabbitMQ at {redact_url(settings.BROKER_URL)}")
        env["REDIS_URL"] = settings.REDIS_URL

        if os.environ.get("RPC_URL"):
            rpc_url = settings.RPC_URL
            collection = Collection.objects.filter(chain_id=connect(rpc_url).eth.chain_id).first()
            if collection is None:
                raise CommandError(
                    f"no collection is registered for the chain at {rpc_url}: "
                    "deploy one with `manage.py deploy_collection` first"
                )
        else:
            if not port_is_free(EMBEDDED_RPC_PORT):
                raise CommandError(
                    f"port {EMBEDDED_RPC_PORT} is taken: is another `make run` going? "
                    "Stop it, or set RPC_URL to use that chain"
                )
            self.anvil = start_anvil(port=EMBEDDED_RPC_PORT, block_time=options["block_time"])
            rpc_url = self.anvil.rpc_url
            w3 = connect(rpc_url)
            stale = forget_chain(w3.eth.chain_id)
            if stale:
                self.stdout.write(f"the embedded chain starts empty: forgot {stale} collection(s)")
            _check_world_models(Path(settings.REFERENCE_WORLD_DIR))
            collection = deploy_collection(
                w3,
                deployer(w3.eth.chain_id).key.to_0x_hex(),
                reference_world_spec(publish_weights=True),
            )
            env["RPC_URL"] = rpc_url
        info = write_deployment_file(
            collection, rpc_url=rpc_url, extra={"admin_url": f"{settings.WEB_URL}/admin/"}
        )

        # One prometheus_client multiprocess directory for the stack, emptied at start: the
        # web's /metrics then sums the workers' counters too (docs/observability.md).
        metrics_dir = Path(
            env.get("PROMETHEUS_MULTIPROC_DIR") or Path(settings.RUN_DIR) / "prometheus"
        )
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        shutdown_ms = "10000"
        self._spawn(
            "web", [*manage, "runserver", options["web_addr"], "--noreload"], env
        )  # static files: WhiteNoise serves what _collect_static() collected, as in production
        self._spawn("listener", [*manage, "listen_chain"], env)
        self._spawn(
            "render-worker",
            [*manage, "rundramatiq", "--processes", "1", "--threads", str(options["render_threads"]),
             "--queues", RENDER_QUEUE, "--worker-shutdown-timeout", shutdown_ms],
            env,
        )  # fmt: skip
        self._spawn(
            "io-worker",
            [*manage, "rundramatiq", "--processes", "1", "--threads", str(options["io_threads"]),
             "--queues", IO_QUEUE, "--worker-shutdown-timeout", shutdown_ms],
            env,
        )  # fmt: skip
        self._spawn(
            "webhook-worker",
            [*manage, "rundramatiq", "--processes", "1",
             "--threads", str(options["webhook_threads"]),
             "--queues", WEBHOOK_QUEUE, "--worker-shutdown-timeout", shutdown_ms],
            env,
        )  # fmt: skip
        # the sale's on-chain controls, on the one worker holding the sales key (SALES_ROLE)
        self._spawn(
            "admin-worker",
            [*manage, "rundramatiq", "--processes", "1", "--threads", "1",
             "--queues", SALES_QUEUE, "--worker-shutdown-timeout", shutdown_ms],
            env,
        )  # fmt: skip
        self.stdout.write(json.dumps(info, indent=2))
        self.stdout.write(f"deployment written to {settings.DEPLOYMENT_FILE}")
        self.stdout.write("stack is up; `make demo` mints a few tokens. Ctrl-C stops everything.")
        while not self.stopping:
            for name, process in self.children:
                if process.poll() is not None:
                    raise CommandError(f"{name} exited with status {process.returncode}; stopping")
            time.sleep(0.5)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.children.append((name, subprocess.Popen(argv, env=env)))

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _stop_all(self) -> None:
        for _name, process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
        for _name, process in reversed(self.children):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.anvil is not None:
            self.anvil.stop()
        self.stdout.write(f"stopped {len(self.children) + bool(self.anvil)} processes")


def _collect_static() -> None:
    """``collectstatic``, unless the files it would collect are the ones collected last time.

    The web server serves static files the way production does (WhiteNoise, hashed and
    compressed names), so they must be collected; compressing them (the API docs' bundles
    above all) takes most of a minute, redone in full on every run, and a restart of the stack
    should not wait for it when nothing changed. Any file added, removed or touched collects
    again."""
    from django.contrib.staticfiles.finders import get_finders

    root = Path(settings.STATIC_ROOT)
    seen = hashlib.sha256(json.dumps([str(root), settings.STORAGES["staticfiles"]]).encode())
    for finder in get_finders():
        for path, storage in finder.list(["CVS", ".*", "*~"]):  # collectstatic's own ignores
            stat = os.stat(storage.path(path))
            seen.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    stamp = Path(settings.RUN_DIR) / "static-collected"  # not in STATIC_ROOT: it is all served
    collected = (root / "staticfiles.json").is_file() and stamp.is_file()
    if collected and stamp.read_text() == seen.hexdigest():
        return
    call_command("collectstatic", interactive=False, verbosity=0)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(seen.hexdigest())


def _check_world_models(root: Path) -> None:
    """The embedded collection renders with the reference world's trained models (committed in
    ``models/reference-world``): say what is missing before anything is deployed."""
    from generation.reference_world.collection import style_image_paths

    needed = [root / "diffusion" / "model_index.json", root / "clip" / "open_clip_config.json"]
    missing = [path for path in [*needed, *style_image_paths(root)] if not path.is_file()]
    if missing:
        raise CommandError(
            f"the reference world's models are incomplete in {root} (REFERENCE_WORLD_DIR): "
            f"{', '.join(str(p) for p in missing[:3])}{' …' if len(missing) > 3 else ''} "
            "missing. They are committed with the code; `manage.py train_reference_world "
            f"--clip --diffusion --style-images --out {root}` rebuilds them."
        )
