"""The phases of a load run, side by side on one stack: the pipeline idle, running, and running
with the render worker niced, under SCHED_IDLE, and pinned to the last core."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from devtools.load.measures import (
    Probe,
    client_results,
    cpu_seconds,
    cpu_used,
    log_lines,
    percentile,
)
from devtools.load.options import LOCUSTFILE, SLUG, WRK_SCRIPT, WRK_THREADS, LoadOptions
from devtools.load.scheduling import pin, renice, sched_idle
from devtools.load.stack import Stack, has_gunicorn_conf, running_stack
from devtools.load.streams import stream_capacity
from generation.models import Token, TokenEvent

Status = Token.Status


def run_phases(
    options: LoadOptions, scratch: Path, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Every phase on one running stack, in order; the figures the report is made of."""
    users, duration = options.users, options.duration
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with running_stack(options, scratch) as stack:
        if options.sse_only:
            say(f"SSE capacity: streams in steps of {options.sse_step}, the web tier alone ...")
            stream_tokens = [t.token_id for t in stack.pool[: options.sse_max + options.sse_probes]]
            streams = stream_capacity(options, stack.url, stream_tokens, say)
            return {**_setup(options, stack, load_before), "streams": streams, "phases": {}}
        phases: dict[str, dict[str, Any]] = {}
        say(f"pipeline idle: {users} users for {duration} s ...")
        phases["pipeline idle"] = _phase(options, stack, scratch, "idle")
        render = stack.render
        assert render is not None  # started unless --sse-only
        from generation import stages

        for token in stack.pool:
            stages.send(stages.RENDER, token.pk)
        say(f"pipeline running: {len(stack.pool)} renders queued, {users} users ...")
        phases["pipeline running"] = _phase(options, stack, scratch, "running")
        if options.render_nice:
            renice(render.pid, options.render_nice)
            say(f"pipeline running, render worker at nice {options.render_nice} ...")
            phases[f"pipeline running, render worker nice {options.render_nice}"] = _phase(
                options, stack, scratch, "niced"
            )
        if options.render_idle:
            sched_idle(render.pid)
            say("pipeline running, render worker under SCHED_IDLE ...")
            phases["pipeline running, render worker SCHED_IDLE"] = _phase(
                options, stack, scratch, "idle-class"
            )
        cpus = sorted(os.sched_getaffinity(0))[-options.render_cpus :]
        if options.render_cpus and len(cpus) < os.cpu_count():  # type: ignore[operator]
            pin(render.pid, set(cpus))
            label = f"render worker on core {','.join(map(str, cpus))} only"
            say(f"pipeline running, {label} ...")
            phases[f"pipeline running, {label}"] = _phase(options, stack, scratch, "pinned")
        pool = [t.pk for t in stack.pool]
        starved = not Token.objects.filter(pk__in=pool, status=Status.SEED_COMMITTED).exists()
    return {
        **_setup(options, stack, load_before),
        "streams": None,
        "phases": phases,
        "starved": starved,
    }


def _setup(options: LoadOptions, stack: Stack, load_before: str) -> dict[str, Any]:
    """What the run was, for the report."""
    return {
        "sse_step": options.sse_step,
        "streams_per_process": max(1, options.threads - 4),  # the server's default (stack.py)
        "users": options.users,
        "client_processes": options.client_processes,
        "client": (
            "wrk"
            if options.client == "wrk"
            else f"locust x{options.client_processes}"
            if options.client_processes > 1
            else "locust"
        ),
        "render_idle": options.render_idle,
        "duration": options.duration,
        "workers": options.workers,
        "threads": options.threads,
        "render_threads": settings.RENDER_BATCH_SIZE,
        "steps": stack.collection.steps,
        "pool": len(stack.pool),
        "database": connection.vendor,
        "load_before": load_before,
        "gunicorn_conf": has_gunicorn_conf(),
    }


def _phase(options: LoadOptions, stack: Stack, scratch: Path, tag: str) -> dict[str, Any]:
    """One phase: the load client for ``options.duration`` seconds, the probe beside it."""
    import psutil  # locust's dependency, so there wherever locust is

    url, locust = stack.url, options.locust
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
    if options.client == "wrk":
        argv = [
            "wrk", "-t", str(WRK_THREADS), "-c", str(options.users),
            "-d", f"{options.duration}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), url,
            "--", SLUG, str(first), str(options.users), str(WRK_THREADS),
            str(results_file) + ".wrk",
        ]  # fmt: skip
    else:
        argv = [
            str(locust), "-f", str(LOCUSTFILE), "--headless", "--only-summary",
            "-u", str(options.users), "-r", str(options.spawn_rate),
            "-t", f"{options.duration}s", "--host", url, "--csv", str(prefix),
            "--loglevel", "WARNING", "--collection", SLUG, "--first-token", str(first),
            "--token-count", str(options.users), "--results-file", str(results_file),
            "--client-processes", str(options.client_processes),
        ]  # fmt: skip
        if options.client_processes > 1:
            argv += ["--processes", str(options.client_processes)]
    access_log = stack.access_log
    logged = log_lines(access_log)
    tree = {name: psutil.Process(p.pid) for name, p in stack.processes.items()}
    cpu_before = {name: cpu_seconds(p) for name, p in tree.items()}
    load_before = os.getloadavg()[0]
    started_at, started = timezone.now(), time.monotonic()
    with (scratch / f"locust-{tag}.log").open("wb") as log:
        runner = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        locust_proc = psutil.Process(runner.pid)
        locust_cpu: dict[int, float] = {}
        probe = Probe(url, f"/api/collections/{SLUG}/tokens/{first}/")
        probe.start()
        while runner.poll() is None:
            # a finished locust worker process keeps its last reading
            locust_cpu.update(cpu_seconds(locust_proc))
            time.sleep(0.5)
        probe.stop()
    wall = time.monotonic() - started
    ended_at = timezone.now()
    cpu_after = {name: cpu_seconds(p) for name, p in tree.items()}
    cpu = {name: cpu_used(cpu_before[name], cpu_after[name]) / wall for name in tree}
    recycled = len(set(cpu_after["web"]) - set(cpu_before["web"]))
    cpu["load client"] = cpu_used({}, locust_cpu) / wall
    client = client_results(scratch, results_file, tag)
    time.sleep(0.5)  # gunicorn's access log is written after each response
    server = sorted(
        int(line.split()[1]) / 1000 for line in log_lines(access_log)[len(logged) :] if line
    )
    renders = TokenEvent.objects.filter(
        token__collection__slug=SLUG, status=Status.RENDERED, at__gte=started_at,
        at__lte=ended_at,
    ).count()  # fmt: skip
    return {
        **client,
        "rps": client["requests"] / max(client["seconds"], 1e-9),
        "server_p50": percentile(server, 50) if server else float("nan"),
        "server_p95": percentile(server, 95) if server else float("nan"),
        "probe": probe.percentiles(),
        "renders": renders,
        "recycled": recycled,
        "cpu": cpu,
        "load": (load_before, os.getloadavg()[0]),
    }
