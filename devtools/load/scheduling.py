"""The render worker's place on the CPU, changed while it runs: every thread of the process
and of its children, as a service manager would set it at start."""

from __future__ import annotations

import os
from collections.abc import Callable


def renice(pid: int, value: int) -> None:
    """Every thread to ``value``: Linux applies a nice value per thread (setpriority on a pid
    changes only its main thread). Equivalent to starting the worker under ``nice -n value``
    (or systemd's Nice=)."""
    _each_thread(pid, lambda tid: os.setpriority(os.PRIO_PROCESS, tid, value))


def sched_idle(pid: int) -> None:
    """Every thread to SCHED_IDLE: they run only when no other thread wants the CPU (nice
    values do not apply any more). Equivalent to starting the worker under ``chrt --idle 0``
    (or systemd's CPUSchedulingPolicy=idle)."""
    _each_thread(pid, lambda tid: os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0)))


def pin(pid: int, cpus: set[int]) -> None:
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
