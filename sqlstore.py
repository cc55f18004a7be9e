"""One SQLite file of the data directory as a store: the plumbing visits/ and desk/ share.

The file is created mode 0600 (with its -wal and -shm: they hold the same rows), opened in WAL
mode with ``synchronous=FULL`` and foreign keys on. Writes run in ``BEGIN IMMEDIATE``
transactions, so two writers, in this process or another, are serialised by SQLite itself; an
RLock serialises this process's threads on the one connection.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path


class SqliteStore:
    def __init__(self, data_dir: str | Path, file: str, schema: str) -> None:
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / file
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if f.exists():
                f.chmod(0o600)  # an older copy left readable
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(schema)
        self._lock = threading.RLock()

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it or nothing, serialised with every other writer."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """Several reads that see one moment of the file (no writer waits on them)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()
