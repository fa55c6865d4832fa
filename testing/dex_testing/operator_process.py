"""The operator as a real subprocess, as ``kopf.testing.KopfRunner`` runs one, but in its own
process group: a SIGKILL takes exactly it, which the crash-resume tests rely on."""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from dexctl.processes import Child


def _live(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class OperatorProcess:
    """``python -m dex_operator`` against ``kubeconfig``; ``env`` carries its ``DEX_*`` config."""

    def __init__(self, kubeconfig: Path, log_path: Path, env: Mapping[str, str]) -> None:
        self.kubeconfig, self.log_path, self.env = kubeconfig, log_path, dict(env)
        self.child: Child | None = None
        self.liveness_port = int(self.env.get("DEX_LIVENESS_PORT", "0"))

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        env.setdefault("DEX_BIND_HOST", "127.0.0.1")
        self.child = Child(
            "operator", [sys.executable, "-m", "dex_operator"], log=self.log_path, env=env
        )
        if self.liveness_port:
            url = f"http://127.0.0.1:{self.liveness_port}/healthz"
            self.child.wait_ready(lambda: _live(url), timeout=timeout, what="live")
        return self

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown."""
        if self.child is not None:
            self.child.kill()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(grace=15)
