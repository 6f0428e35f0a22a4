"""Outcome records: what a worker answered, by (command, idempotency key), so that a
duplicate delivery gets the same answer without the handler running again.

The rule (docs/PROTOCOL.md, "Idempotency"): a terminal outcome (success, or a failure with
``retryable`` false) is recorded before its result is sent; retryable failures are not, so a
retry really runs, except ``expired``, which is recorded, and which a later terminal outcome
of the same key replaces. The first terminal outcome wins.

:class:`MemoryRecord` lives as long as the process; :class:`SqliteRecord` in a file, shared by
the processes of one machine and kept across restarts.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from typing import Any, Dict, Optional, Tuple

from .protocol import is_expired

Outcome = Dict[str, Any]


class MemoryRecord:
    """Records in a dict: duplicates this process sees are answered from it."""

    def __init__(self) -> None:
        self._records: Dict[Tuple[str, str], Outcome] = {}
        self._lock = threading.Lock()

    def get(self, command: str, key: str) -> Optional[Outcome]:
        with self._lock:
            return self._records.get((command, key))

    def put(self, command: str, key: str, outcome: Outcome) -> None:
        with self._lock:
            old = self._records.get((command, key))
            if old is None or is_expired(old):
                self._records[(command, key)] = outcome

    def forget(self, command: str, key: str) -> None:
        """Drop a record, so the next command under the key runs (before an operator's
        ``baton retry`` of a compensation this worker failed for good)."""
        with self._lock:
            self._records.pop((command, key), None)


class SqliteRecord:
    """Records in a SQLite file (created when missing)."""

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outcomes ("
            " command TEXT NOT NULL, key TEXT NOT NULL, outcome TEXT NOT NULL,"
            " expired INTEGER NOT NULL, recorded_at INTEGER NOT NULL,"
            " PRIMARY KEY (command, key))"
        )

    def get(self, command: str, key: str) -> Optional[Outcome]:
        with self._lock:
            row = self._db.execute(
                "SELECT outcome FROM outcomes WHERE command = ? AND key = ?", (command, key)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, command: str, key: str, outcome: Outcome) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO outcomes (command, key, outcome, expired, recorded_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (command, key) DO UPDATE SET"
                " outcome = excluded.outcome, expired = excluded.expired, recorded_at = excluded.recorded_at"
                " WHERE outcomes.expired = 1",
                (command, key, json.dumps(outcome), int(is_expired(outcome)), int(time.time() * 1000)),
            )

    def forget(self, command: str, key: str) -> None:
        """As :meth:`MemoryRecord.forget`."""
        with self._lock:
            self._db.execute("DELETE FROM outcomes WHERE command = ? AND key = ?", (command, key))

    def prune(self, older_than_s: float) -> int:
        """Delete records older than this many seconds (keep them at least as long as the
        orchestrator keeps finished sagas, its ``--retain``); returns how many went."""
        cutoff = int((time.time() - older_than_s) * 1000)
        with self._lock:
            return self._db.execute("DELETE FROM outcomes WHERE recorded_at < ?", (cutoff,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_record(spec: Any) -> Any:
    """A record from what a caller gives: ``None`` a :class:`MemoryRecord`, ``False`` none at
    all, a path a :class:`SqliteRecord`, anything with ``get`` and ``put`` itself."""
    if spec is None:
        return MemoryRecord()
    if spec is False:
        return None
    if isinstance(spec, (str, os.PathLike)):
        return SqliteRecord(spec)
    if hasattr(spec, "get") and hasattr(spec, "put"):
        return spec
    raise TypeError(f"record: give None (in memory), False (none), a file path, or an object with get and put; not {spec!r}")
