"""Run test tooling in fresh Python processes.

Feast imports a repository's definition modules by name and caches them per process, so each
world (one Feast repo) is built by ``python -m <module> <args>`` in a process of its own, with
no ``DEX_``/``MLFLOW_`` setting inherited from the caller (``mlflow.set_tracking_uri`` exports
one): the world's own configuration alone decides.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_checked(
    argv: list[str], *, timeout_s: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    """Run ``argv``; its stdout, or a RuntimeError carrying the tails of both streams."""
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
    return done.stdout


def run_module(module: str, *args: str, timeout_s: float) -> str:
    """``python -m module args`` in a fresh process; its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEX_", "MLFLOW_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", FEAST_USAGE="False")
    return run_checked([sys.executable, "-m", module, *args], timeout_s=timeout_s, env=env)
