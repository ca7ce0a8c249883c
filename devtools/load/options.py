"""What one load run is asked to do, and the names it shares with its load clients."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

SLUG = "bench-load"
TARGET_P95_MS = 50.0
LOCUSTFILE = Path(__file__).resolve().with_name("loadtest.py")
WRK_SCRIPT = LOCUSTFILE.with_suffix(".lua")
WRK_THREADS = 2
# the production config, with the benchmark's address and sizes on top (when there is one)
GUNICORN_CONF_MODULE = "mintsite.gunicorn_conf"
WSGI_APPLICATION = "mintsite.wsgi:application"


@dataclass(frozen=True)
class LoadOptions:
    users: int = 200  # concurrent collectors
    spawn_rate: float = 50  # users started per second
    duration: int = 60  # seconds per phase
    # 2 cores: one process per core (the GIL lets a process use one), and threads to
    # overlap each request's database and Redis round trips; more threads add no CPU.
    workers: int = 2
    threads: int = 4
    client: str = "locust"  # or "wrk"
    client_processes: int = 1  # locust processes (event loops)
    steps: int = 4  # diffusion steps per render
    render_nice: int = 10  # 0: no niced phase
    render_idle: bool = True  # a phase with the render worker under SCHED_IDLE
    render_cpus: int = 1  # a last phase with the render worker on this many cores (0: none)
    # sse_only: instead of the phases, the SSE capacity step (devtools/load/streams.py) on the
    # web tier alone (no workers, no load client): streams added sse_step at a time up to
    # sse_max, sse_probes clients polling for sse_seconds at each
    sse_step: int = 4
    sse_max: int = 96
    sse_seconds: int = 10
    sse_probes: int = 4
    sse_only: bool = False

    @property
    def locust(self) -> Path:
        """locust's script beside this interpreter (a dev dependency)."""
        return Path(sys.executable).with_name("locust")

    def problems(self) -> list[str]:
        """What is wrong with these options, as the command's flags name them."""
        found = [
            f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}"
            for name in (
                "users", "duration", "workers", "threads", "steps", "client_processes",
                "sse_max", "sse_seconds", "sse_probes",
            )
            if getattr(self, name) < 1
        ]  # fmt: skip
        if self.sse_step < 1:
            found.append(f"--sse-step must be at least 1, not {self.sse_step}")
        if self.spawn_rate <= 0:
            found.append(f"--spawn-rate must be above 0, not {self.spawn_rate}")
        if self.client not in ("locust", "wrk"):
            found.append(f"--client must be locust or wrk, not {self.client!r}")
        return found
