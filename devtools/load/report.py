"""bench_load's report: what was run, in words, and the phases' figures side by side."""

from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path
from typing import Any

from devtools.doc_sections import write_section
from devtools.load.options import GUNICORN_CONF_MODULE, TARGET_P95_MS, WRK_THREADS, LoadOptions


def intro(figures: dict[str, Any], options: LoadOptions) -> list[str]:
    """The paragraphs above the table: the load, the server, the phases, how it is measured."""
    nice = options.render_nice
    if options.client == "wrk":
        clients = (
            f"wrk connections, from its C event loop in a process of its own, {WRK_THREADS} "
            "threads, devtools/load/loadtest.lua; a pause of 0.75-2.25 s, 1.5 s on average, "
            "after each answer"
        )
    elif figures["client_processes"] == 1:
        clients = "locust users, in a process of its own"
    else:
        clients = f"locust users, in {figures['client_processes']} processes (`--processes`)"
    return [
        f"{figures['users']} collectors ({clients}) each watch "
        "one token with `GET /api/collections/<slug>/tokens/<id>/`, as the mint page "
        "polls: If-None-Match with the ETag of the copy held (304 while nothing "
        "changed), then 1.5 s (`poll_interval_ms`) after each answer, so about "
        f"{figures['users'] / 1.5:.0f} requests/s offered. The web tier runs under "
        f"gunicorn on loopback, DEBUG off, {figures['workers']} gthread workers x "
        f"{figures['threads']} threads (one process per core, as the GIL lets a process "
        "use one; threads overlap the database round trips; more add no CPU)"
        + (
            f", on top of {GUNICORN_CONF_MODULE.replace('.', '/')}.py (its worker recycling after "
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
        f"{options.client} for its {figures['users']} collectors, and by a probe, one more collector polling the first watched "
        "token ten times a second over a kept-alive connection from the benchmark's own "
        "(mostly idle) process. Locust runs its users on one Python event loop per "
        "process, and its times include the wait of a finished response for that loop "
        "(wrk's loop is C and does little per answer); the probe's are what one more "
        "collector sees of the same server under the same load. The time in the "
        "server is gunicorn's, from reading the request to writing the answer.",
    ]


def table(f: dict[str, Any]) -> list[str]:
    """The phases side by side, a column each."""
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


def write_report(path: Path, figures: dict[str, Any], options: LoadOptions) -> None:
    """The report as a section of ``path`` (docs/benchmarks.md): one for locust, one for wrk."""
    wrk = options.client == "wrk"
    write_section(path, "bench-load-wrk" if wrk else "bench-load", [
        "## Token status under load" + (", measured by wrk" if wrk else ""),
        "",
        *intro(figures, options),
        "",
        *table(figures),
        "",
        f"- Date: {date.today().isoformat()}; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, {figures['database']}; load average before the run: "
        f"{figures['load_before']}",
        "- Reproduce: `make bench-load" + (" BENCH_LOAD_CLIENT=wrk" if wrk else "")
        + "` (PostgreSQL when `DATABASE_URL` is set; `manage.py bench_load --help` for "
        "users, duration, workers, threads, client)",
    ])  # fmt: skip


def streams_report(figures: dict[str, Any]) -> list[str]:
    """The SSE capacity step: the figure, how it was found, each step's numbers."""
    streams = figures["streams"]
    workers, threads = figures["workers"], figures["threads"]
    lines = [
        f"**{streams['capacity']} concurrent SSE clients** held open while the token status "
        f"endpoint kept its p95 under {TARGET_P95_MS:.0f} ms (with {streams['asked']} streams "
        f"asked for), on gunicorn with {workers} gthread workers x {threads} threads "
        f"({workers * threads} threads"
        + (
            f", on top of {GUNICORN_CONF_MODULE.replace('.', '/')}.py"
            if figures["gunicorn_conf"]
            else ""
        )
        + f"; API_MAX_STREAMS_PER_PROCESS {figures['streams_per_process'] or 'off'}), the "
        "pipeline idle. Each stream holds one thread for its whole life, so the figure follows "
        "workers x threads; each process gives at most API_MAX_STREAMS_PER_PROCESS of its "
        "threads to streams (default: 4 fewer than its threads) and answers the rest 503 "
        "`streams_busy` (the mint page then polls), so the pollers keep their threads however "
        "many streams are asked for. Size `GUNICORN_THREADS` and `WEB_CONCURRENCY` from it "
        "(docs/deploy.md). A waiting stream reads nothing from the database (it is woken by "
        "Redis pub/sub, mintsite/notifier.py).",
        "",
        f"Streams (`GET .../tokens/<id>/stream/`, one connection each, one token each) are "
        f"added {figures['sse_step']} at a time; once each new one has had its first event "
        f"(or 10 s passed), {streams['probes']} probe clients poll other tokens' status ten "
        f"times a second each (If-None-Match, kept-alive connections) for {streams['seconds']} "
        "s. A step keeps the target when no stream waits for a thread (each is held or "
        "refused), no poll failed (a poll error is one not answered within 10 s: it waited for "
        "a thread) and the polls' p95 is under the target; the run stops at the first step "
        "that does not, or at `--sse-max`. "
        "**The per-client cap on streams (API_MAX_STREAMS_PER_CLIENT) and the anonymous rate "
        "limit are off for the benchmark's web server** (every client is 127.0.0.1), and "
        "streams live 3600 s there instead of 300 s. **This machine is small and shared** "
        "(other jobs ran beside the benchmark): a dedicated web host holds more per thread "
        "of CPU, but not more streams than threads.",
        "",
        "| streams opened | held / waiting for a thread / refused | polls | status p50 / p95 "
        "(ms) | poll errors | target kept |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for step in streams["steps"]:
        states = step["states"]
        lines.append(
            f"| {step['streams']} | {states.get('held', 0)} / {states.get('opened', 0)} / "
            f"{states.get('refused', 0)} | {step['polls']:,} | {step['p50']:.1f} / "
            f"{step['p95']:.1f} | {step['errors']} | {'yes' if step['kept'] else '**no**'} |"
        )
    return lines


def write_streams_report(path: Path, figures: dict[str, Any]) -> None:
    """The SSE capacity step as its own section of ``path``."""
    write_section(path, "bench-load-sse", [
        "## Concurrent SSE clients",
        "",
        *streams_report(figures),
        "",
        f"- Date: {date.today().isoformat()}; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores (shared), {figures['database']}; load average before the "
        f"run: {figures['load_before']}",
        "- Reproduce: `make bench-load-sse` (this step alone: `manage.py bench_load --sse-only`, "
        "with `--threads`, `--workers`, `--sse-step`, `--sse-max`, `--sse-seconds`); "
        "`make bench-load` runs it after its phases",
    ])  # fmt: skip
