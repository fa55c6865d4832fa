"""A real ``mlflow server`` on loopback for tests that need MLflow's REST API (the operator's
registry client speaks only that): SQLite backend, local artifacts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from dexctl.polling import GiveUpError, eventually
from dexctl.processes import free_ports


@contextmanager
def mlflow_server(work: Path, backend_store_uri: str | None = None) -> Iterator[str]:
    """Serve ``backend_store_uri`` (default: a new SQLite file in ``work``); yields its URL."""
    work.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    log_path = work / "mlflow-server.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "mlflow", "server",
                "--host", "127.0.0.1",
                "--port", str(port),
                "--backend-store-uri", backend_store_uri or f"sqlite:///{work / 'mlflow.db'}",
                "--artifacts-destination", str(work / "artifacts"),
                "--workers", "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if proc.poll() is not None:
                raise GiveUpError(f"mlflow server exited: {log_path.read_text()[-3000:]}")
            return httpx.get(f"{url}/health", timeout=2).status_code == 200

        try:
            eventually(up, timeout=120, interval=0.5, what="mlflow server up")
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # mlflow forks workers: stop the whole group
            proc.wait(timeout=30)
