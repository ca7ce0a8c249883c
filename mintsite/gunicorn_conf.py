"""Gunicorn settings for the web tier: ``gunicorn -c mintsite/gunicorn_conf.py``.

Threaded workers (``gthread``): the token stream (SSE) and long polls hold a thread for up to
``API_STREAM_MAX_SECONDS`` / ``API_LONG_POLL_MAX_SECONDS`` while mostly waiting, so each process
serves many of them at once; processes add CPU parallelism. docs/deploy.md sizes them. One
client holds at most ``API_MAX_STREAMS_PER_CLIENT`` of them, and a process gives at most
``API_MAX_STREAMS_PER_PROCESS`` of its threads to them (default: GUNICORN_THREADS - 4, read from
the same variable), so requests that do not wait always find a thread (mintsite/api/holds.py).
Every value can be overridden from the environment (``GUNICORN_*``, ``WEB_CONCURRENCY``).
"""

from __future__ import annotations

import multiprocessing
import os

wsgi_app = "mintsite.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 9)))
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
# gthread workers heartbeat from their main loop, so a long stream does not trip this; it
# catches a worker that is stuck for real.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then (with jitter, so not all at once) to bound slow leaks. Rarely:
# a recycle drops the worker's kept-alive connections and their collectors' next polls wait
# (in `make bench-load` under wrk, the 60 s phases with a recycle had p95 144-496 ms, those
# without 12-41 ms). Mint pages poll cheaply and often: 10,000 recycled each worker every
# 2.5 min at 130 polls/s.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "200000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "20000"))
# With no proxy in front, gunicorn terminates TLS itself: the certificate (its chain) and its
# key, PEM files (docs/deploy.md). Static files need no proxy either: WhiteNoise serves them.
certfile = os.environ.get("GUNICORN_CERTFILE") or None
keyfile = os.environ.get("GUNICORN_KEYFILE") or None
# The reverse proxy's address: only it may set X-Forwarded-* (see DJANGO_BEHIND_TLS_PROXY).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
errorlog = "-"
# Import the app once in the master, so a broken configuration fails at start, not per worker.
preload_app = os.environ.get("GUNICORN_PRELOAD", "1") not in ("0", "false", "no", "off")


def child_exit(server, worker) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, a dead worker's live gauges leave the sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
