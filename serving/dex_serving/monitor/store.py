"""Durable event storage: SQLite in WAL mode, ``synchronous=FULL``.

:meth:`EventStore.add` returns only after the transaction is committed to disk, so an HTTP
acknowledgement sent after it survives a crash (even SIGKILL) of the monitor. Events are keyed
by (CloudEvent id, type): a sender retrying after a lost acknowledgement stores nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic_core import to_json

from dex_serving.eventlog import REQUEST_TYPE, CloudEvent
from dex_serving.monitor.rows import Row, feature_rows


class StorageError(Exception):
    """Events could not be stored (disk full, I/O error): nothing of the batch was kept."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    model TEXT,
    version TEXT,
    received_at REAL NOT NULL,
    attributes TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (id, type)
);
CREATE TABLE IF NOT EXISTS feature_rows (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    model TEXT,
    version TEXT,
    row TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feature_rows_model ON feature_rows (model, version, seq);
"""


def _distinct(events: Sequence[CloudEvent]) -> list[CloudEvent]:
    """Each (id, type) once, first come first kept."""
    seen: dict[tuple[str, str], CloudEvent] = {}
    for event in events:
        seen.setdefault((event.id, event.type), event)
    return list(seen.values())


# Well under SQLite's bound-parameter limit (32766 since 3.32).
_IDS_PER_QUERY = 900

ColumnsFor = Callable[[str | None, str | None], Sequence[str]]


class EventStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One connection guarded by a lock: writes are serialized by SQLite anyway, and
        # FastAPI runs sync handlers on a thread pool.
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)

    def add(
        self,
        events: Sequence[CloudEvent],
        columns_for: ColumnsFor,
        default_version: str | None,
        categorical_for: ColumnsFor | None = None,
    ) -> int:
        """Store events atomically; returns how many were new."""
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                fresh = _distinct(events)
                changes = self._conn.total_changes
                self._insert_events(fresh, default_version, now)
                if self._conn.total_changes - changes != len(fresh):
                    # Some were stored before (a sender retrying after a lost
                    # acknowledgement): start over knowing which, so that only new requests
                    # add feature rows. The common case pays no lookup.
                    self._conn.execute("ROLLBACK")
                    self._conn.execute("BEGIN IMMEDIATE")
                    fresh = self._unstored(fresh)
                    self._insert_events(fresh, default_version, now)
                rows: list[tuple[str, str | None, str | None, str]] = []
                for event in fresh:
                    if event.type != REQUEST_TYPE:
                        continue
                    model = event.inferenceservicename
                    version = event.modelversion or default_version
                    categorical = categorical_for(model, version) if categorical_for else ()
                    found = feature_rows(event.data, columns_for(model, version), categorical)
                    rows.extend((event.id, model, version, to_json(r).decode()) for r in found)
                self._conn.executemany(
                    "INSERT INTO feature_rows (event_id, model, version, row) VALUES (?, ?, ?, ?)",
                    rows,
                )
                self._conn.execute("COMMIT")
            except BaseException as exc:
                # SQLite may already have rolled back (e.g. SQLITE_FULL at COMMIT).
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(str(exc)) from exc
                raise
        return len(fresh)

    def _insert_events(
        self, events: Sequence[CloudEvent], default_version: str | None, now: float
    ) -> None:
        # Whole-batch statements, JSON by pydantic-core: a monitor sharing the serving
        # node's cores spends the least CPU per event it can, since a burst here is latency
        # in the predictions served beside it.
        self._conn.executemany(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    event.id,
                    event.type,
                    event.inferenceservicename,
                    event.modelversion or default_version,
                    now,
                    event.model_dump_json(exclude={"data"}, exclude_none=True),
                    to_json(event.data).decode(),
                )
                for event in events
            ],
        )

    def _unstored(self, events: Sequence[CloudEvent]) -> list[CloudEvent]:
        ids = list({event.id for event in events})
        stored: set[tuple[str, str]] = set()
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            stored.update(
                self._conn.execute(
                    f"SELECT id, type FROM events WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        return [event for event in events if (event.id, event.type) not in stored]

    def counts(self) -> dict[str, int]:
        with self._lock:
            events, requests = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(type = ?), 0) FROM events", (REQUEST_TYPE,)
            ).fetchone()
            (rows,) = self._conn.execute("SELECT COUNT(*) FROM feature_rows").fetchone()
        return {"events": int(events), "requests": int(requests), "rows": int(rows)}

    def event_ids(self) -> set[tuple[str, str]]:
        with self._lock:
            return {(i, t) for i, t in self._conn.execute("SELECT id, type FROM events")}

    def versions(self) -> list[tuple[str | None, str | None]]:
        with self._lock:
            return list(self._conn.execute("SELECT DISTINCT model, version FROM feature_rows"))

    def window(self, model: str | None, version: str | None, size: int) -> list[Row]:
        """The latest ``size`` feature rows of one model version (the sliding window)."""
        with self._lock:
            found = self._conn.execute(
                "SELECT row FROM feature_rows WHERE model IS ? AND version IS ? "
                "ORDER BY seq DESC LIMIT ?",
                (model, version, size),
            ).fetchall()
        return [json.loads(r) for (r,) in reversed(found)]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
