"""The system under load: a seeded database, the web tier under gunicorn, a render worker and
an io worker (real ``rundramatiq`` processes on the reference models), each logging to scratch."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.conf import settings

from chain.anvil import free_port
from devtools.errors import BenchmarkError
from devtools.load.options import (
    GUNICORN_CONF_MODULE,
    SLUG,
    WSGI_APPLICATION,
    LoadOptions,
)
from devtools.rarity_fixtures import WEIGHTED_WITH_SHAPE
from generation.models import Collection, Token
from mintsite.database_url import current_database_url

Status = Token.Status


@dataclass(frozen=True)
class Stack:
    url: str
    collection: Collection
    pool: list[Token]  # every token seeded, in token order; the first ``users`` are watched
    web: subprocess.Popen
    render: subprocess.Popen | None  # None: the web tier alone (--sse-only)
    io: subprocess.Popen | None
    access_log: Path  # gunicorn's: status and microseconds in the server, a line per request

    @property
    def processes(self) -> dict[str, subprocess.Popen]:
        named = {"web": self.web, "render worker": self.render, "io worker": self.io}
        return {name: p for name, p in named.items() if p is not None}


@contextmanager
def running_stack(options: LoadOptions, scratch: Path) -> Iterator[Stack]:
    """The seeded stack, warmed up (every gunicorn thread has served, the render worker has
    loaded its models); its processes are stopped on the way out. With ``--sse-only``, the
    web tier alone."""
    collection, pool = _seed_database(options)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mintsite.settings",
        "DATABASE_URL": current_database_url(),
        "DJANGO_DEBUG": "0",
        # Every locust user comes from 127.0.0.1: the per-address limit would throttle
        # them as one client, and the cap on streams per client would refuse the SSE step's
        # fifth. Both off for this server only (the report says so); its streams outlast the
        # SSE step.
        "API_ANON_RATE": "",
        "API_MAX_STREAMS_PER_CLIENT": "0",
        # what API_MAX_STREAMS_PER_PROCESS's default follows (the command line sets gunicorn's)
        "GUNICORN_THREADS": str(options.threads),
        "API_STREAM_MAX_SECONDS": "3600",
        "RENDER_DEVICE": "cpu",
        "RENDER_CACHE_DIR": str(scratch / "renders"),
        "IPFS_STORE_DIR": str(scratch / "ipfs"),
        "WEB_URL": url,
        # pins go on to a publish batch: a batch bigger than the pool that waits longer
        # than the run keeps the chain (not started here) out of it. (A full batch used to
        # be published at once, fail for want of a chain, and be retried: every failed try
        # touched the pinned tokens, and each touch ended their watchers' 304s.)
        "PUBLISH_BATCH_WAIT": "3600",
        "PUBLISH_BATCH_SIZE": "1000000",
    }
    with ExitStack() as stack:
        access_log = scratch / "access.log"
        web = stack.enter_context(_process(
            "web", _gunicorn(options, port, access_log), env, scratch
        ))  # fmt: skip
        render = io = None
        if not options.sse_only:
            render = stack.enter_context(_process("render-worker", [
                sys.executable, "manage.py", "rundramatiq", "--processes", "1",
                "--threads", str(settings.RENDER_BATCH_SIZE), "--queues", "render",
                "--worker-shutdown-timeout", "5000",
            ], env, scratch))  # fmt: skip
            io = stack.enter_context(_process("io-worker", [
                sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads",
                "2", "--queues", "io", "--worker-shutdown-timeout", "5000",
            ], env, scratch))  # fmt: skip
        _wait_ready(url, options.workers * options.threads, web, render, scratch)
        yield Stack(url, collection, pool, web, render, io, access_log)


def _seed_database(options: LoadOptions) -> tuple[Collection, list[Token]]:
    """The collection and its tokens, seeds committed: the first ``users`` are watched;
    all of them are rendered in the running phase (more than it can render, so the render
    worker never runs dry)."""
    models = Path(settings.REFERENCE_MODELS_DIR)
    collection = Collection.objects.create(
        slug=SLUG, name="Bench load", chain_id=31337, contract_address="0x" + "be" * 20,
        model_dir=str(models / "diffusion"), clip_dir=str(models / "clip"),
        prompt_template="an abstract painting {palette} {shape}, token {token_id}",
        style_prompt="an abstract painting", clip_threshold=-1.0, steps=options.steps,
        rarity=WEIGHTED_WITH_SHAPE, max_supply=100_000,
    )  # fmt: skip
    count = max(options.users, 15 * options.duration, options.sse_max + options.sse_probes)
    seeds = ["0x" + hashlib.sha256(f"bench-load:{i}".encode()).hexdigest() for i in
             range(count + 1)]  # fmt: skip
    tokens = Token.objects.bulk_create(
        Token(
            collection=collection, token_id=i, owner="0x" + f"{i:040x}",
            mint_tx_hash=f"0x{i:064x}", mint_log_index=0, mint_block_number=1 + i // 50,
            mint_block_hash="0x" + "22" * 32, expected_seed=seeds[i], seed=seeds[i],
            status=Status.SEED_COMMITTED,
        )
        for i in range(1, count + 1)
    )  # fmt: skip
    return collection, sorted(tokens, key=lambda t: t.token_id)


def has_gunicorn_conf() -> bool:
    return importlib.util.find_spec(GUNICORN_CONF_MODULE) is not None


def _gunicorn(options: LoadOptions, port: int, access_log: Path) -> list[str]:
    argv = [sys.executable, "-m", "gunicorn"]
    if has_gunicorn_conf():
        argv += ["--config", f"python:{GUNICORN_CONF_MODULE}"]
    return [
        *argv, WSGI_APPLICATION, "--bind", f"127.0.0.1:{port}",
        "--worker-class", "gthread", "--workers", str(options.workers),
        "--threads", str(options.threads),
        # status and time in the server (microseconds): what the client sees, less the
        # wait for a thread, the loopback and the client's own scheduling
        "--access-logfile", str(access_log), "--access-logformat", "%(s)s %(D)s",
    ]  # fmt: skip


@contextmanager
def _process(
    name: str, argv: list[str], env: dict[str, str], scratch: Path
) -> Iterator[subprocess.Popen]:
    log = (scratch / f"{name}.log").open("wb")
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                               cwd=settings.BASE_DIR)  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(
    url: str,
    threads: int,
    web: subprocess.Popen,
    render: subprocess.Popen | None,
    scratch: Path,
) -> None:
    """The web tier answers (and has served each watched token once, so no phase pays
    for imports and first connections) and the render worker has warmed its models."""
    deadline = time.monotonic() + 300
    status_url = f"{url}/api/collections/{SLUG}/tokens/1/"
    while True:
        if web.poll() is not None:
            raise BenchmarkError(f"gunicorn exited: see {scratch / 'web.log'}")
        try:
            if httpx.get(status_url, timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise BenchmarkError(f"gunicorn did not answer: see {scratch / 'web.log'}")
        time.sleep(0.2)

    # Many requests at once, each on a connection of its own, so that every worker and
    # every thread has imported the views and opened its database connection.
    def fetch(token_id: int) -> None:
        httpx.get(f"{url}/api/collections/{SLUG}/tokens/{token_id}/", timeout=30)

    with ThreadPoolExecutor(max_workers=4 * threads) as pool:
        list(pool.map(fetch, [1 + i % 50 for i in range(20 * threads)]))
    if render is None:
        return
    log = scratch / "render-worker.log"
    while f"warm: {SLUG}" not in log.read_text(errors="replace"):
        if render.poll() is not None or time.monotonic() > deadline:
            raise BenchmarkError(f"the render worker did not warm up: see {log}")
        time.sleep(0.2)
