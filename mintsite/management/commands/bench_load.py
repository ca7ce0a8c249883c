"""``manage.py bench_load`` (what ``make bench-load`` calls): the token status endpoint under load.

On a fresh test database, in one run: the web tier under gunicorn on a loopback port (its own
process, DEBUG off, gthread workers), a real ``rundramatiq`` render worker and io worker on the
reference models, and locust (``mintsite/loadtest.py``, a second process) with N collectors
each polling their token's status with If-None-Match every 1.5 s, as the mint page does.
Phases of the same length, side by side: the pipeline idle (workers up, no work), then the
pipeline running (the watched tokens and more sent to the render queue, rendered and pinned
while the collectors watch), then the same with the render worker niced (``--render-nice``),
then with it under SCHED_IDLE (``--render-idle``: it gets only the CPU nothing else wants).
Target: p95 under 50 ms with the pipeline running. A benchmark, not a test: it prints figures
and does not fail on them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from chain.anvil import free_port
from generation.models import Collection, Token, TokenEvent
from mintsite.benchmarks import write_section
from mintsite.database_url import current_database_url

Status = Token.Status
SLUG = "bench-load"
TARGET_P95_MS = 50.0
LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest.py"
WRK_SCRIPT = LOCUSTFILE.with_suffix(".lua")
WRK_THREADS = 2
GUNICORN_CONF = Path(__file__).resolve().parents[2] / "gunicorn_conf.py"
RARITY = {
    "mode": "weighted",
    "categories": [
        {
            "name": "palette",
            "verify": False,
            "options": [
                {"name": "warm", "prompt": "in warm reds", "weight": 3},
                {"name": "cold", "prompt": "in cold blues", "weight": 1},
            ],
        },
        {
            "name": "shape",
            "verify": False,
            "options": [
                {"name": "circles", "prompt": "of circles", "weight": 1},
                {"name": "stripes", "prompt": "of stripes", "weight": 1},
            ],
        },
    ],
}


class Command(BaseCommand):
    help = "Load the token status endpoint with locust, pipeline idle and running, side by side."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--users", type=int, default=200, help="concurrent collectors")
        parser.add_argument("--spawn-rate", type=float, default=50, help="users started per s")
        parser.add_argument("--duration", type=int, default=60, help="seconds per phase")
        # 2 cores: one process per core (the GIL lets a process use one), and threads to
        # overlap each request's database and Redis round trips; more threads add no CPU.
        parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
        parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
        parser.add_argument(
            "--client",
            choices=["locust", "wrk"],
            default="locust",
            help="the load client: locust (Python) or wrk (C; Debian: apt-get install wrk)",
        )
        parser.add_argument(
            "--client-processes", type=int, default=1, help="locust processes (event loops)"
        )
        parser.add_argument("--steps", type=int, default=4, help="diffusion steps per render")
        parser.add_argument(
            "--render-nice",
            type=int,
            default=10,
            help="a third phase with the render worker at this nice value (0: no third phase)",
        )
        parser.add_argument(
            "--render-idle",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="a phase with the render worker under SCHED_IDLE",
        )
        parser.add_argument(
            "--render-cpus",
            type=int,
            default=1,
            help="a last phase with the render worker on this many cores only (0: none)",
        )
        parser.add_argument("--write", type=Path, help="update this markdown file's section")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("users", "duration", "workers", "threads", "steps", "client_processes"):
            if options[name] < 1:
                flag = name.replace("_", "-")
                raise CommandError(f"--{flag} must be at least 1, not {options[name]}")
        if options["spawn_rate"] <= 0:
            raise CommandError(f"--spawn-rate must be above 0, not {options['spawn_rate']}")
        namespace = settings.DRAMATIQ_BROKER["OPTIONS"]["namespace"]
        if namespace == "mint":
            raise CommandError("set DRAMATIQ_NAMESPACE (e.g. mint-bench) so a running stack's "
                               "workers do not take the benchmark's messages")  # fmt: skip
        locust = Path(sys.executable).with_name("locust")
        if options["client"] == "locust" and not locust.exists():
            raise CommandError(f"no {locust}: locust is a dev dependency (pip install -e '.[dev]')")
        if options["client"] == "wrk" and not shutil.which("wrk"):
            raise CommandError("no wrk on PATH: install it (Debian: apt-get install wrk)")
        if not (Path(settings.REFERENCE_MODELS_DIR) / "diffusion").is_dir():
            raise CommandError(f"no reference models in {settings.REFERENCE_MODELS_DIR}: run "
                               "`make models` (manage.py build_reference_models)")  # fmt: skip
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            client.ping()
        except redis.ConnectionError as exc:
            raise CommandError(f"no broker at {settings.REDIS_URL}: set REDIS_URL") from exc
        scratch = Path(tempfile.mkdtemp(prefix="mint-bench-load-"))
        test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
        try:
            figures = self._run(options, scratch, locust)
        finally:
            connection.creation.destroy_test_db(test_db, verbosity=0)
            for key in client.scan_iter(f"{namespace}*"):
                client.delete(key)
            shutil.rmtree(scratch, ignore_errors=True)
        nice = options["render_nice"]
        if options["client"] == "wrk":
            clients = (
                f"wrk connections, from its C event loop in a process of its own, {WRK_THREADS} "
                "threads, mintsite/loadtest.lua; a pause of 0.75-2.25 s, 1.5 s on average, "
                "after each answer"
            )
        elif figures["client_processes"] == 1:
            clients = "locust users, in a process of its own"
        else:
            clients = f"locust users, in {figures['client_processes']} processes (`--processes`)"
        intro = [
            f"{figures['users']} collectors ({clients}) each watch "
            "one token with `GET /api/collections/<slug>/tokens/<id>/`, as the mint page "
            "polls: If-None-Match with the ETag of the copy held (304 while nothing "
            "changed), then 1.5 s (`poll_interval_ms`) after each answer, so about "
            f"{figures['users'] / 1.5:.0f} requests/s offered. The web tier runs under "
            f"gunicorn on loopback, DEBUG off, {figures['workers']} gthread workers x "
            f"{figures['threads']} threads (one process per core, as the GIL lets a process "
            "use one; threads overlap the database round trips; more add no CPU)"
            + (
                ", on top of mintsite/gunicorn_conf.py (its worker recycling after "
                "max_requests included)"
                if figures["gunicorn_conf"]
                else ""
            )
            + ". **The anonymous rate limit (API_ANON_RATE, 120/min per address) is off for "
            "the benchmark's web server**: every simulated collector comes from 127.0.0.1 and would "
            "share one budget.",
            "",
            "Phases of the same length in one run, side by side: the pipeline idle (render "
            "and io workers up, no work); the pipeline running (a real `rundramatiq` render "
            "worker rendering and verifying on the reference models, an io worker pinning; "
            "each phase watches the tokens next in the render queue, so most of them go "
            "SEED_COMMITTED -> RENDERING -> RENDERED -> PINNED while watched; publishing, a "
            "chain transaction per batch, is not part of it)"
            + (
                f"; the same with the render worker at nice {nice} (every thread: as if "
                f"started under `nice -n {nice}` or systemd `Nice={nice}`)"
                if nice
                else ""
            )
            + (
                "; the same with the render worker under SCHED_IDLE (as if started under "
                "`chrt --idle 0` or systemd `CPUSchedulingPolicy=idle`: it runs only on CPU "
                "nothing else wants)"
                if figures["render_idle"]
                else ""
            )
            + (
                "; then the render worker, still so, on the last core only (as if started "
                "under `taskset -c`, or systemd `CPUAffinity=`), so that one core is the web "
                "tier's"
                if any("only" in name for name in figures["phases"])
                else ""
            )
            + ". Everything shares the machine's cores: web tier, workers, the load client, "
            f"PostgreSQL, Redis, and whatever else runs. Latency is measured twice: by "
            f"{options['client']} for its {figures['users']} collectors, and by a probe, one more collector polling the first watched "
            "token ten times a second over a kept-alive connection from the benchmark's own "
            "(mostly idle) process. Locust runs its users on one Python event loop per "
            "process, and its times include the wait of a finished response for that loop "
            "(wrk's loop is C and does little per answer); the probe's are what one more "
            "collector sees of the same server under the same load. The time in the "
            "server is gunicorn's, from reading the request to writing the answer.",
        ]
        lines = self._report(figures)
        self.stdout.write("\n".join([*intro, "", *lines]))
        if options["write"]:
            wrk = options["client"] == "wrk"  # a section each: locust's and wrk's figures
            write_section(options["write"], "bench-load-wrk" if wrk else "bench-load", [
                "## Token status under load" + (", measured by wrk" if wrk else ""),
                "",
                *intro,
                "",
                *lines,
                "",
                f"- Date: {date.today().isoformat()}; machine: {platform.machine()}, "
                f"{os.cpu_count()} cores, {figures['database']}; load average before the run: "
                f"{figures['load_before']}",
                "- Reproduce: `make bench-load" + (" BENCH_LOAD_CLIENT=wrk" if wrk else "")
                + "` (PostgreSQL when `DATABASE_URL` is set; `manage.py bench_load --help` for "
                "users, duration, workers, threads, client)",
            ])  # fmt: skip
            self.stdout.write(f"wrote {options['write']}")

    # --- the run ---------------------------------------------------------------------------

    def _run(self, options: dict[str, Any], scratch: Path, locust: Path) -> dict[str, Any]:
        users, duration = options["users"], options["duration"]
        collection, pool = self._seed_database(options)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mintsite.settings",
            "DATABASE_URL": current_database_url(),
            "DJANGO_DEBUG": "0",
            # Every locust user comes from 127.0.0.1: the per-address limit would throttle
            # them as one client. Off for this server only (the report says so).
            "API_ANON_RATE": "",
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
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        with ExitStack() as stack:
            access_log = scratch / "access.log"
            web = stack.enter_context(self._process(
                "web", self._gunicorn(options, port, access_log), env, scratch
            ))  # fmt: skip
            render = stack.enter_context(self._process("render-worker", [
                sys.executable, "manage.py", "rundramatiq", "--processes", "1",
                "--threads", str(settings.RENDER_BATCH_SIZE), "--queues", "render",
                "--worker-shutdown-timeout", "5000",
            ], env, scratch))  # fmt: skip
            io = stack.enter_context(self._process("io-worker", [
                sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads",
                "2", "--queues", "io", "--worker-shutdown-timeout", "5000",
            ], env, scratch))  # fmt: skip
            self._wait_ready(url, options["workers"] * options["threads"], web, render, scratch)
            processes = {"web": web, "render worker": render, "io worker": io}
            phases: dict[str, dict[str, Any]] = {}
            self.stderr.write(f"pipeline idle: {users} users for {duration} s ...")
            phases["pipeline idle"] = self._phase(options, url, locust, scratch, "idle", processes)
            from generation.tasks import render_token

            for token in pool:
                render_token.send(token.pk)
            self.stderr.write(f"pipeline running: {len(pool)} renders queued, {users} users ...")
            phases["pipeline running"] = self._phase(
                options, url, locust, scratch, "running", processes
            )
            if options["render_nice"]:
                _renice(render.pid, options["render_nice"])
                self.stderr.write(f"pipeline running, render worker at nice "
                                  f"{options['render_nice']} ...")  # fmt: skip
                phases[f"pipeline running, render worker nice {options['render_nice']}"] = (
                    self._phase(options, url, locust, scratch, "niced", processes)
                )
            if options["render_idle"]:
                _sched_idle(render.pid)
                self.stderr.write("pipeline running, render worker under SCHED_IDLE ...")
                phases["pipeline running, render worker SCHED_IDLE"] = self._phase(
                    options, url, locust, scratch, "idle-class", processes
                )
            cpus = sorted(os.sched_getaffinity(0))[-options["render_cpus"] :]
            if options["render_cpus"] and len(cpus) < os.cpu_count():  # type: ignore[operator]
                _pin(render.pid, set(cpus))
                label = f"render worker on core {','.join(map(str, cpus))} only"
                self.stderr.write(f"pipeline running, {label} ...")
                phases[f"pipeline running, {label}"] = self._phase(
                    options, url, locust, scratch, "pinned", processes
                )
            left = Token.objects.filter(pk__in=[t.pk for t in pool], status=Status.SEED_COMMITTED)
            starved = not left.exists()
        return {
            "users": users,
            "client_processes": options["client_processes"],
            "client": (
                "wrk"
                if options["client"] == "wrk"
                else f"locust x{options['client_processes']}"
                if options["client_processes"] > 1
                else "locust"
            ),
            "render_idle": options["render_idle"],
            "duration": duration,
            "workers": options["workers"],
            "threads": options["threads"],
            "render_threads": settings.RENDER_BATCH_SIZE,
            "steps": collection.steps,
            "pool": len(pool),
            "database": connection.vendor,
            "load_before": load_before,
            "gunicorn_conf": GUNICORN_CONF.exists(),
            "phases": phases,
            "starved": starved,
        }

    def _seed_database(self, options: dict[str, Any]) -> tuple[Collection, list[Token]]:
        """The collection and its tokens, seeds committed: the first ``users`` are watched;
        all of them are rendered in the running phase (more than it can render, so the render
        worker never runs dry)."""
        models = Path(settings.REFERENCE_MODELS_DIR)
        collection = Collection.objects.create(
            slug=SLUG, name="Bench load", chain_id=31337, contract_address="0x" + "be" * 20,
            model_dir=str(models / "diffusion"), clip_dir=str(models / "clip"),
            prompt_template="an abstract painting {palette} {shape}, token {token_id}",
            style_prompt="an abstract painting", clip_threshold=-1.0, steps=options["steps"],
            rarity=RARITY, max_supply=100_000,
        )  # fmt: skip
        count = max(options["users"], 15 * options["duration"])
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

    def _gunicorn(self, options: dict[str, Any], port: int, access_log: Path) -> list[str]:
        argv = [sys.executable, "-m", "gunicorn"]
        if GUNICORN_CONF.exists():
            # the production config, with the benchmark's address and sizes on top
            argv += ["--config", "python:mintsite.gunicorn_conf"]
        return [
            *argv, "mintsite.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--worker-class", "gthread", "--workers", str(options["workers"]),
            "--threads", str(options["threads"]),
            # status and time in the server (microseconds): what the client sees, less the
            # wait for a thread, the loopback and the client's own scheduling
            "--access-logfile", str(access_log), "--access-logformat", "%(s)s %(D)s",
        ]  # fmt: skip

    @contextmanager
    def _process(
        self, name: str, argv: list[str], env: dict[str, str], scratch: Path
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
        self,
        url: str,
        threads: int,
        web: subprocess.Popen,
        render: subprocess.Popen,
        scratch: Path,
    ) -> None:
        """The web tier answers (and has served each watched token once, so no phase pays
        for imports and first connections) and the render worker has warmed its models."""
        deadline = time.monotonic() + 300
        status_url = f"{url}/api/collections/{SLUG}/tokens/1/"
        while True:
            if web.poll() is not None:
                raise CommandError(f"gunicorn exited: see {scratch / 'web.log'}")
            try:
                if httpx.get(status_url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise CommandError(f"gunicorn did not answer: see {scratch / 'web.log'}")
            time.sleep(0.2)
        # Many requests at once, each on a connection of its own, so that every worker and
        # every thread has imported the views and opened its database connection.
        from concurrent.futures import ThreadPoolExecutor

        def fetch(token_id: int) -> None:
            httpx.get(f"{url}/api/collections/{SLUG}/tokens/{token_id}/", timeout=30)

        with ThreadPoolExecutor(max_workers=4 * threads) as pool:
            list(pool.map(fetch, [1 + i % 50 for i in range(20 * threads)]))
        log = scratch / "render-worker.log"
        while f"warm: {SLUG}" not in log.read_text(errors="replace"):
            if render.poll() is not None or time.monotonic() > deadline:
                raise CommandError(f"the render worker did not warm up: see {log}")
            time.sleep(0.2)

    def _phase(
        self,
        options: dict[str, Any],
        url: str,
        locust: Path,
        scratch: Path,
        tag: str,
        processes: dict[str, subprocess.Popen],
    ) -> dict[str, Any]:
        import psutil  # locust's dependency, so there wherever locust is

        prefix, results_file = scratch / f"locust-{tag}", scratch / f"results-{tag}.json"
        # the tokens next in the render queue: with the pipeline running, most of the watched
        # tokens change while they are watched, in every phase (each change ends the 304s)
        first = (
            Token.objects.filter(
                collection__slug=SLUG, status__in=[Status.SEED_COMMITTED, Status.RENDERING]
            )
            .order_by("token_id")
            .values_list("token_id", flat=True)
            .first()
        ) or 1
        if options["client"] == "wrk":
            argv = [
                "wrk", "-t", str(WRK_THREADS), "-c", str(options["users"]),
                "-d", f"{options['duration']}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), url,
                "--", SLUG, str(first), str(options["users"]), str(WRK_THREADS),
                str(results_file) + ".wrk",
            ]  # fmt: skip
        else:
            argv = [
                str(locust), "-f", str(LOCUSTFILE), "--headless", "--only-summary",
                "-u", str(options["users"]), "-r", str(options["spawn_rate"]),
                "-t", f"{options['duration']}s", "--host", url, "--csv", str(prefix),
                "--loglevel", "WARNING", "--collection", SLUG, "--first-token", str(first),
                "--token-count", str(options["users"]), "--results-file", str(results_file),
                "--client-processes", str(options["client_processes"]),
            ]  # fmt: skip
            if options["client_processes"] > 1:
                argv += ["--processes", str(options["client_processes"])]
        access_log = scratch / "access.log"
        logged = _lines(access_log)
        tree = {name: psutil.Process(p.pid) for name, p in processes.items()}
        cpu_before = {name: _cpu_seconds(p) for name, p in tree.items()}
        load_before = os.getloadavg()[0]
        started_at, started = _now(), time.monotonic()
        with (scratch / f"locust-{tag}.log").open("wb") as log:
            runner = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            locust_proc = psutil.Process(runner.pid)
            locust_cpu: dict[int, float] = {}
            probe = Probe(url, f"/api/collections/{SLUG}/tokens/{first}/")
            probe.start()
            while runner.poll() is None:
                # a finished locust worker process keeps its last reading
                locust_cpu.update(_cpu_seconds(locust_proc))
                time.sleep(0.5)
            probe.stop()
        wall = time.monotonic() - started
        ended_at = _now()
        cpu_after = {name: _cpu_seconds(p) for name, p in tree.items()}
        cpu = {name: _cpu_used(cpu_before[name], cpu_after[name]) / wall for name in tree}
        recycled = len(set(cpu_after["web"]) - set(cpu_before["web"]))
        cpu["load client"] = _cpu_used({}, locust_cpu) / wall
        client = _client_results(scratch, results_file, tag)
        time.sleep(0.5)  # gunicorn's access log is written after each response
        server = sorted(
            int(line.split()[1]) / 1000 for line in _lines(access_log)[len(logged) :] if line
        )
        renders = TokenEvent.objects.filter(
            token__collection__slug=SLUG, status=Status.RENDERED, at__gte=started_at,
            at__lte=ended_at,
        ).count()  # fmt: skip
        return {
            **client,
            "rps": client["requests"] / max(client["seconds"], 1e-9),
            "server_p50": _percentile(server, 50) if server else float("nan"),
            "server_p95": _percentile(server, 95) if server else float("nan"),
            "probe": probe.percentiles(),
            "renders": renders,
            "recycled": recycled,
            "cpu": cpu,
            "load": (load_before, os.getloadavg()[0]),
        }

    # --- the report ------------------------------------------------------------------------

    def _report(self, f: dict[str, Any]) -> list[str]:
        phases = list(f["phases"].values())

        def row(label: str, show: Any) -> str:
            return f"| {label} | " + " | ".join(show(p) for p in phases) + " |"

        def answers(p: dict[str, Any]) -> str:
            codes = p["codes"]
            other = sum(n for c, n in codes.items() if c not in ("200", "304"))
            return f"{codes.get('304', 0):,} / {codes.get('200', 0):,} / {other:,}"

        def target(p95: float) -> str:
            verdict = "PASS" if p95 < TARGET_P95_MS else "FAIL"
            return f"**{p95:.0f} ms: {verdict}**"

        def cores(p: dict[str, Any]) -> str:
            return ", ".join(f"{used:.2f}" for used in p["cpu"].values())

        starved = " (the render queue ran dry: more tokens needed)" if f["starved"] else ""
        return [
            "| measure | " + " | ".join(f["phases"]) + " |",
            "|---|" + "---:|" * len(phases),
            row("concurrent clients, load client", lambda p: f"{f['users']}, {f['client']}"),
            row("load applied (first request to last answer)", lambda p: f"{p['seconds']:.0f} s"),
            row("requests", lambda p: f"{p['requests']:,}"),
            row("failures", lambda p: f"{p['failures']:,}"),
            row("answers 304 / 200 / other", answers),
            row("requests/s", lambda p: f"{p['rps']:.1f}"),
            row(
                "latency p50 / p95 / p99 (ms)",
                lambda p: f"{p['p50']:.1f} / {p['p95']:.1f} / {p['p99']:.1f}",
            ),
            row("latency max (ms)", lambda p: f"{p['max']:.0f}"),
            row(
                "time in the server p50 / p95 (ms, gunicorn's access log)",
                lambda p: f"{p['server_p50']:.1f} / {p['server_p95']:.1f}",
            ),
            row(
                f"**p95 < {TARGET_P95_MS:.0f} ms, as {f['client']} measured**",
                lambda p: target(p["p95"]),
            ),
            row(
                "probe client beside them: polls, p50 / p95 / p99 (ms)",
                lambda p: (
                    f"{p['probe']['count']:,}: {p['probe']['p50']:.1f} / "
                    f"{p['probe']['p95']:.1f} / {p['probe']['p99']:.1f}"
                ),
            ),
            row(
                f"**p95 < {TARGET_P95_MS:.0f} ms, as the probe measured**",
                lambda p: target(p["probe"]["p95"]),
            ),
            row(
                f"renders completed (steps {f['steps']}, {f['render_threads']} render "
                f"threads){starved}",
                lambda p: f"{p['renders']:,}",
            ),
            row(
                "gunicorn workers started during the phase (max_requests)",
                lambda p: f"{p['recycled']}",
            ),
            row(f"CPU cores used: {', '.join(phases[0]['cpu'])}", cores),
            row(
                "load average (1 min) at start / end",
                lambda p: f"{p['load'][0]:.2f} / {p['load'][1]:.2f}",
            ),
        ]


class Probe:
    """One more collector, outside locust: polls a token's status every ``interval`` seconds
    over a kept-alive connection (If-None-Match, as the mint page does) and times each answer.

    Locust runs its 200 users on one Python event loop, and its response times include the
    time a finished response waits for that loop; this client, in the benchmark's own mostly
    idle process, measures what one more collector sees of the same server under the same load.
    """

    def __init__(self, base_url: str, path: str, interval: float = 0.1) -> None:
        import threading
        from urllib.parse import urlsplit

        self.address = urlsplit(base_url)
        self.path, self.interval = path, interval
        self.times_ms: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        import http.client

        connection = http.client.HTTPConnection(
            self.address.hostname, self.address.port, timeout=10
        )
        etag = None
        while not self._stop.wait(self.interval):
            headers = {"Accept": "application/json", **({"If-None-Match": etag} if etag else {})}
            began = time.perf_counter()
            try:
                connection.request("GET", self.path, headers=headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                connection.close()
                continue
            self.times_ms.append((time.perf_counter() - began) * 1000)
            if response.status == 200:
                etag = response.getheader("ETag")
            elif response.status != 304:
                self.errors += 1
        connection.close()

    def percentiles(self) -> dict[str, float]:
        ordered = sorted(self.times_ms)
        if not ordered:
            return {"count": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
        return {
            "count": len(ordered),
            "p50": _percentile(ordered, 50),
            "p95": _percentile(ordered, 95),
            "p99": _percentile(ordered, 99),
        }


def _client_results(scratch: Path, results_file: Path, tag: str) -> dict[str, Any]:
    """requests, failures, codes, seconds and latency p50/p95/p99/max (ms) of the load client:
    exact from every locust process's answer times, or wrk's own histogram."""
    log = scratch / f"locust-{tag}.log"
    wrk = results_file.with_name(results_file.name + ".wrk")
    if wrk.exists():
        r = json.loads(wrk.read_text())
        if not r["requests"]:
            raise CommandError(f"wrk made no requests: see {log}")
        codes = Counter(r["codes"])
        failures = r["socket_errors"] + sum(n for c, n in codes.items() if c not in ("200", "304"))
        return {
            "requests": r["requests"], "failures": failures, "codes": codes,
            "seconds": r["seconds"], "p50": r["p50"], "p95": r["p95"], "p99": r["p99"],
            "max": r["max"],
        }  # fmt: skip
    parts = [json.loads(p.read_text()) for p in scratch.glob(f"{results_file.name}.*")]
    times = sorted(t for part in parts for t in part["times_ms"])
    if not times:
        raise CommandError(f"the load client made no requests: see {log}")
    return {
        "requests": len(times),
        "failures": sum(part["failures"] for part in parts),
        "codes": sum((Counter(part["codes"]) for part in parts), Counter()),
        "seconds": max(part["seconds"] for part in parts),
        "p50": _percentile(times, 50),
        "p95": _percentile(times, 95),
        "p99": _percentile(times, 99),
        "max": times[-1],
    }


def _renice(pid: int, value: int) -> None:
    """Every thread to ``value``: Linux applies a nice value per thread (setpriority on a pid
    changes only its main thread). Equivalent to starting the worker under ``nice -n value``
    (or systemd's Nice=)."""
    _each_thread(pid, lambda tid: os.setpriority(os.PRIO_PROCESS, tid, value))


def _sched_idle(pid: int) -> None:
    """Every thread to SCHED_IDLE: they run only when no other thread wants the CPU (nice
    values do not apply any more). Equivalent to starting the worker under ``chrt --idle 0``
    (or systemd's CPUSchedulingPolicy=idle)."""
    _each_thread(pid, lambda tid: os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0)))


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread onto ``cpus`` only, as if started under ``taskset -c`` (or systemd's
    CPUAffinity=); torch's threads then share those cores."""
    _each_thread(pid, lambda tid: os.sched_setaffinity(tid, cpus))


def _each_thread(pid: int, apply: Callable[[int], None]) -> None:
    """``apply`` to every thread of the process and of its children (the render worker's
    torch and Dramatiq threads are already running; new threads inherit from their creator)."""
    import psutil

    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        for thread in process.threads():
            apply(thread.id)


def _cpu_seconds(process: Any) -> dict[int, float]:
    """User + system CPU seconds of a process and each of its living children (gunicorn's
    workers, dramatiq's worker processes), by pid."""
    import psutil

    try:
        tree = [process, *process.children(recursive=True)]
    except psutil.Error:  # it has exited
        return {}
    seconds = {}
    for p in tree:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        seconds[p.pid] = times.user + times.system
    return seconds


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two snapshots; a process that started in between counts from zero
    (gunicorn recycles a worker after max_requests), one that ended in between is lost."""
    return sum(used - before.get(pid, 0.0) for pid, used in after.items())


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _percentile(ordered: list[float], percent: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def _now() -> Any:
    from django.utils import timezone

    return timezone.now()
