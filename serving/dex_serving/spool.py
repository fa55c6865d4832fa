"""Batches of inference events the monitor could not take yet, kept on disk until it can.

A monitor restart or outage must not lose events: the logger writes each undeliverable batch
here (one file per batch, already encoded as the request body) and replays the oldest first
once the monitor answers again. Bounded in bytes, so a long outage fills the spool, not the
disk; what does not fit is dropped and counted by the caller. Files survive a restart of the
transformer too: a new process replays what the last one spooled.

A file is written under a temporary name and renamed, so a crash never leaves half a batch
that replay would send.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

from pydantic import BaseModel

SUFFIX = ".batch"


class SpooledBatch(BaseModel):
    path: Path
    events: int
    body: bytes


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        for partial in directory.glob("*.tmp"):
            partial.unlink(missing_ok=True)
        self._lock = threading.Lock()
        self._bytes = sum(p.stat().st_size for p in directory.glob(f"*{SUFFIX}"))
        self._sequence = itertools.count()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob(f"*{SUFFIX}"))

    def put(self, body: bytes, events: int) -> bool:
        """Keep one batch; False when it would exceed the bound (nothing written)."""
        with self._lock:
            if self._bytes + len(body) > self.max_bytes:
                return False
            # Names sort by time, then by this process's order: replay keeps arrival order
            # across restarts. The event count rides in the name so replay needs no parsing.
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._sequence):08d}-{events}"
            partial = self.directory / f"{name}.tmp"
            with partial.open("wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            partial.rename(self.directory / f"{name}{SUFFIX}")
            self._bytes += len(body)
            return True

    def oldest(self) -> SpooledBatch | None:
        files = sorted(self.directory.glob(f"*{SUFFIX}"))
        if not files:
            return None
        path = files[0]
        return SpooledBatch(
            path=path, events=int(path.stem.rsplit("-", 1)[1]), body=path.read_bytes()
        )

    def remove(self, batch: SpooledBatch) -> None:
        with self._lock:
            batch.path.unlink(missing_ok=True)
            self._bytes = max(0, self._bytes - len(batch.body))
