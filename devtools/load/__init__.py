"""The token status endpoint under load (``manage.py bench_load``, what ``make bench-load`` calls).

On a fresh test database, in one run: the web tier under gunicorn on a loopback port (its own
process, DEBUG off, gthread workers), a real ``rundramatiq`` render worker and io worker on the
reference models, and the load client in a process of its own (locust with ``loadtest.py``, or
wrk with ``loadtest.lua``): N collectors each polling their token's status with If-None-Match
every 1.5 s, as the mint page does. Phases of the same length, side by side: the pipeline idle
(workers up, no work), then the pipeline running (the watched tokens and more sent to the
render queue, rendered and pinned while the collectors watch), then the same with the render
worker niced (``--render-nice``), under SCHED_IDLE (``--render-idle``: it gets only the CPU
nothing else wants), and on the last core only (``--render-cpus``). Target: p95 under 50 ms
with the pipeline running. A benchmark, not a test: it prints figures and does not fail on them.
With ``--sse-only`` (``make bench-load-sse``), instead: the web tier alone, SSE streams added in
steps while probe clients poll, for how many concurrent streams it holds at that target.

Modules: ``options`` (what a run is asked to do), ``bench`` (checks, the throwaway database, the
run), ``stack`` (the processes under load), ``phases`` (each phase, measured), ``measures`` (the
load client's results, a probe client, CPU), ``scheduling`` (nice, SCHED_IDLE, pinning) and
``report``, and ``streams`` (the SSE step). The load clients' scripts import no Django.
"""
