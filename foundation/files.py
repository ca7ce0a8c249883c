"""Writing a file so a reader never sees it half written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: Path, *, mode: int = 0o644) -> Iterator[Path]:
    """A temporary path of its own beside ``path`` to write to; when the block ends without an
    error it is renamed over ``path`` (atomic on POSIX), else removed. Two processes or threads
    writing the same path at once each get their own temporary name, and the last rename wins
    whole. ``mode`` is set because mkstemp's 0600 would hide the file from workers running as
    other users."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = False) -> None:
    """Write ``data`` to ``path`` through :func:`replacing`; ``durable`` also syncs the bytes to
    disk before the rename (a store whose files are named by their hash must never hold a
    short file under a whole file's name after a crash)."""
    with replacing(path, mode=mode) as tmp, open(tmp, "wb") as out:
        out.write(data)
        if durable:
            out.flush()
            os.fsync(out.fileno())
