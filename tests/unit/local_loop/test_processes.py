"""A supervised child's stop leaves nothing of its process group behind."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from dexctl.polling import eventually
from dexctl.processes import Child

# A leader that exits on SIGTERM and a worker in its group that ignores it, as a pre-fork
# server's master and worker can.
FORKING = """
import os, signal, sys, time
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(sys.argv[1], "w").write(str(os.getpid()))
    while True:
        time.sleep(1)
while True:
    time.sleep(1)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it is gone for our purpose.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_stop_kills_the_workers_that_outlive_their_leader(tmp_path: Path) -> None:
    marker = tmp_path / "worker.pid"
    child = Child("forking", [sys.executable, "-c", FORKING, str(marker)], log=tmp_path / "log")

    def forked() -> int | None:
        text = marker.read_text() if marker.exists() else ""
        return int(text) if text else None

    worker = eventually(forked, timeout=30, what="worker forked")
    assert worker is not None
    assert _alive(worker)
    child.stop(grace=5)
    assert child.proc.returncode == -signal.SIGTERM
    eventually(lambda: not _alive(worker), timeout=10, what="worker gone")
