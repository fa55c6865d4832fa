"""Starting and stopping the control-plane processes, and waiting on them."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ProcessRecord(BaseModel):
    """What is needed to find and stop a process later, possibly from another dexctl run."""

    name: str
    pid: int
    binary: Path
    log: Path


class StartupError(RuntimeError):
    """A component did not become ready; the message carries the tail of its log."""


def free_ports(count: int) -> list[int]:
    """Distinct ports free on 127.0.0.1 right now; the kernel picks them, so parallel runs
    do not clash, and all are held open together so no two are the same."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def port_is_free(port: int) -> bool:
    """True if a server could listen on ``port`` now. SO_REUSEADDR, as every server sets it,
    so TIME_WAIT leftovers of closed connections do not count as "in use"; a listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the test process is killed without running
    # any clean-up, the kernel still kills the control plane. SIGKILL, not SIGTERM: etcd and
    # kube-apiserver terminated together each wait on the other's graceful shutdown, forever.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    name: str, binary: Path, args: Sequence[str], log_path: Path, *, detached: bool
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start ``binary`` in its own session (so its whole group can be signalled) logging to a file.

    ``detached`` processes outlive this Python process (``dexctl dev cluster up``); the
    others die with it even when it is killed without running any clean-up.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [str(binary), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detached else _die_with_parent,
        )
    log.info("started %s pid=%d log=%s", name, proc.pid, log_path)
    return proc, ProcessRecord(name=name, pid=proc.pid, binary=binary, log=log_path)


def is_running(record: ProcessRecord) -> bool:
    """True if ``record.pid`` is alive *and* still runs ``record.binary`` (PIDs get reused)."""
    try:
        exe = os.readlink(f"/proc/{record.pid}/exe")
        with open(f"/proc/{record.pid}/stat", encoding="utf-8") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if state == "Z":
        return False
    return Path(exe.removesuffix(" (deleted)")) == record.binary.resolve()


def stop(
    record: ProcessRecord, proc: subprocess.Popen[bytes] | None, *, grace: float = 10.0
) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, and reap the child."""
    if is_running(record):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while is_running(record) and time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
        if is_running(record):
            log.warning("%s pid=%d ignored SIGTERM; killing", record.name, record.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    log.info("stopped %s pid=%d", record.name, record.pid)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def wait_until(
    name: str,
    ready: Callable[[], bool],
    *,
    proc: subprocess.Popen[bytes],
    record: ProcessRecord,
    timeout: float,
) -> None:
    """Poll ``ready`` until it is true; fail early if the process exits, or at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        code = proc.poll()
        if code is not None:
            raise StartupError(
                f"{name} exited with code {code} while starting; log {record.log}:\n"
                + log_tail(record.log)
            )
        if time.monotonic() > deadline:
            raise StartupError(
                f"{name} not ready after {timeout:.0f} s; log {record.log}:\n"
                + log_tail(record.log)
            )
        time.sleep(0.1)
