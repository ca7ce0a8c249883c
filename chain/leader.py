"""One listener per chain at a time.

On PostgreSQL the leader holds a session-level advisory lock on its own connection, so a second
daemon started against the same database waits as a standby and takes over when the first one's
connection ends (exit, crash or kill -9). SQLite has no such lock: there the rule is one daemon
per machine, enforced with an exclusive ``flock`` on a file beside the database (a second daemon
on the same machine waits; daemons on other machines cannot share a SQLite file anyway).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import connections

log = logging.getLogger(__name__)


def _lock_key(name: str) -> int:
    # pg advisory locks take a signed 64-bit key
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class LeaderLock:
    """``try_acquire()`` is non-blocking; ``held`` stays true until ``release()`` or a lost
    connection (checked by ``still_held()``)."""

    def __init__(self, name: str, *, alias: str = "default") -> None:
        self.name = name
        self.alias = alias
        self.held = False
        self._conn: Any = None
        self._file: IO[str] | None = None

    @property
    def _is_postgres(self) -> bool:
        return connections[self.alias].vendor == "postgresql"

    def try_acquire(self) -> bool:
        if self.held:
            return self.still_held()
        if self._is_postgres:
            self.held = self._pg_try()
        else:
            self.held = self._file_try()
        if self.held:
            log.info("leader for %s", self.name)
        return self.held

    def still_held(self) -> bool:
        if not self.held:
            return False
        if self._is_postgres:
            try:
                with self._conn.cursor() as cur:
                    cur.execute("SELECT 1")
            except Exception:  # any failure of the lock's connection means the lock is gone
                log.error("lost the database connection holding the %s lock", self.name)
                self.held = False
                self._conn = None
        return self.held

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        self.held = False

    def _pg_try(self) -> bool:
        import psycopg

        if self._conn is None:
            db = connections[self.alias].settings_dict
            self._conn = psycopg.connect(
                dbname=db["NAME"],
                user=db.get("USER") or None,
                password=db.get("PASSWORD") or None,
                host=db.get("HOST") or None,
                port=db.get("PORT") or None,
                autocommit=True,
                application_name=f"mint {self.name}",
            )
        with self._conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [_lock_key(self.name)])
            return bool(cur.fetchone()[0])

    def _file_try(self) -> bool:
        db_name = str(connections[self.alias].settings_dict["NAME"])
        folder = Path(db_name).parent if "/" in db_name else Path(settings.RUN_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f".{Path(db_name).name}.{self.name.replace(':', '-')}.lock"
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True
