"""Why a benchmark or the soak could not run (no broker, no models, a process that died)."""


class BenchmarkError(RuntimeError):
    """The run could not be done or finished; the message says what to fix or where to look.

    The management commands turn it into a ``CommandError``, so the tools stay callable
    without them."""
