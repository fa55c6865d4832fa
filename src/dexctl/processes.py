"""Child processes DEX starts on this machine (local serving, the dev cluster, test
operators): one supervisor, so starting, waiting, logging and stopping work the same way.

Every child runs in its own session, so its whole process group can be signalled and a
SIGKILL aimed at it takes nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

from pydantic import BaseModel

from dexctl.polling import GiveUpError, eventually

log = logging.getLogger(__name__)

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1


class ProcessRecord(BaseModel):
    """What is needed to find and stop a process later, possibly from another dexctl run."""

    name: str
    pid: int
    binary: Path
    log: Path | None = None


class StartupError(GiveUpError, RuntimeError):
    """A child exited or did not become ready; the message carries the tail of its log."""


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


def stop_recorded(
    record: ProcessRecord, *, grace: float = 10.0, exited: Callable[[], bool] | None = None
) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds. ``exited`` tells, for a
    child of ours, that it is gone (a zombie still passes :func:`is_running`'s PID test)."""

    def gone() -> bool:
        if exited is not None:
            # Our own child: its exit is the truth. is_running compares the binary, and a
            # script's process runs its interpreter (`feast` is python), never the script.
            return exited()
        return not is_running(record)

    if gone():
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGTERM)
    try:
        eventually(gone, timeout=grace, interval=0.05, what=f"{record.name} to exit")
    except AssertionError:
        log.warning("%s pid=%d ignored SIGTERM; killing", record.name, record.pid)
    # Whatever is left of the group once its leader is gone is orphaned: a pre-fork server's
    # worker (gunicorn's under `feast serve`) outlived its master's SIGTERM.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGKILL)
    log.info("stopped %s pid=%d", record.name, record.pid)


def log_tail(path: Path | None, lines: int = 30) -> str:
    if path is None:
        return "(no log)"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the parent is killed without running any
    # clean-up, the kernel still kills the child. SIGKILL, not SIGTERM: etcd and
    # kube-apiserver terminated together each wait on the other's graceful shutdown, forever.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Child:
    """One supervised child process.

    Its output goes to ``log`` (a file, appended) or, line by line and prefixed with
    ``[name]``, to ``sink`` (so the interleaved output of several children stays readable).
    ``detached`` children outlive this Python process (``dexctl dev cluster up``); the others
    die with it even when it is killed without running any clean-up.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path | None = None,
        sink: IO[str] | None = None,
        env: Mapping[str, str] | None = None,
        detached: bool = False,
        setup: Callable[[], None] | None = None,
    ) -> None:
        """``setup`` runs in the child between fork and exec (e.g. a private mount
        namespace): what it changes is the child's alone."""
        if (log is None) == (sink is None):
            raise ValueError("a child logs to a file or to a sink: give exactly one")
        self.name = name
        self.log = log
        self._sink = sink
        self._tail: list[str] = []
        self._pump: threading.Thread | None = None

        def preexec() -> None:
            if not detached:
                _die_with_parent()
            if setup is not None:
                setup()

        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as out:
                self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                    list(argv),
                    env=None if env is None else dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=preexec if (setup is not None or not detached) else None,
                )
        else:
            self.proc = subprocess.Popen(
                list(argv),
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec if (setup is not None or not detached) else None,
            )
            self._pump = threading.Thread(target=self._copy, name=f"log-{name}", daemon=True)
            self._pump.start()
        self.record = ProcessRecord(
            name=name, pid=self.proc.pid, binary=Path(os.path.realpath(argv[0])), log=log
        )
        log_line = f" log={log}" if log else ""
        logging.getLogger(__name__).info("started %s pid=%d%s", name, self.proc.pid, log_line)

    def _copy(self) -> None:
        assert self.proc.stdout is not None
        assert self._sink is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            self._tail = [*self._tail[-40:], line.rstrip()]
            self._sink.write(f"[{self.name}] {line}")
            self._sink.flush()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        if self.log is not None:
            return log_tail(self.log, lines)
        if self._pump is not None:
            self._pump.join(2)
        return "\n".join(self._tail[-lines:])

    def check_alive(self) -> None:
        """Raise :class:`StartupError` (with the end of its output) if the child exited."""
        code = self.proc.poll()
        if code is not None:
            where = f"; log {self.log}" if self.log else ""
            raise StartupError(f"{self.name} exited with code {code}{where}:\n{self.tail()}")

    def wait_ready(self, ready: Callable[[], T], *, timeout: float, what: str = "ready") -> T:
        """Poll ``ready`` until truthy; fail at once if the child exits, or at the deadline."""

        def check() -> T:
            self.check_alive()
            return ready()

        try:
            return eventually(check, timeout=timeout, what=f"{self.name} {what}")
        except AssertionError as exc:
            raise StartupError(f"{exc}; output:\n{self.tail()}") from exc

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds; reap the child."""
        stop_recorded(self.record, grace=grace, exited=lambda: self.proc.poll() is not None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)
        if self._pump is not None:
            self._pump.join(2)

    def kill(self) -> None:
        """SIGKILL the group: no clean-up, no graceful shutdown."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
