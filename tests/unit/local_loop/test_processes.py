"""A supervised child's stop leaves nothing of its process group behind."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("as_script", [False, True], ids=["interpreter", "script"])
def test_stop_kills_the_workers_that_outlive_their_leader(tmp_path: Path, as_script: bool) -> None:
    """Also when the child is a script (as ``feast`` is): its process runs the interpreter."""
    marker = tmp_path / "worker.pid"
    if as_script:
        script = tmp_path / "forking"
        script.write_text(f"#!{sys.executable}\n{FORKING}")
        script.chmod(0o755)
        argv = [str(script), str(marker)]
    else:
        argv = [sys.executable, "-c", FORKING, str(marker)]
    child = Child("forking", argv, log=tmp_path / "log")
    try:

        def forked() -> int | None:
            text = marker.read_text() if marker.exists() else ""
            return int(text) if text else None

        worker = eventually(forked, timeout=30, what="worker forked")
        assert worker is not None
        assert _alive(worker)
        child.stop(grace=5)
        assert child.proc.returncode == -signal.SIGTERM
        eventually(lambda: not _alive(worker), timeout=10, what="worker gone")
    finally:  # nothing left behind even when the stop under test failed
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
