"""One torch thread for a block of work: what the reference world's training, its samples and
the benchmarks run on.

On the CPU one thread gives the same bytes every run (torch does not promise the same across
thread counts), and no threads spinning against each other on a busy machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)``; the previous count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
