"""What an operator sees of the running system: structured logs, Prometheus metrics, health.

- :mod:`.logs`: a per-thread log context (token, stage, block range) that a logging filter adds
  to every line, and the plain and JSON formats (``LOG_FORMAT``).
- :mod:`.worker`: the Dramatiq middleware that sets that context around each message and
  measures each stage.
- :mod:`.metrics`: the counters and histograms the processes keep, and the ``/metrics`` view
  with the gauges read at scrape time (queues, tokens, transactions, wallets, listener lag).
- :mod:`.health`: ``/healthz`` and ``/readyz``.

docs/observability.md describes every metric and how to scrape the web tier and the workers.
"""
