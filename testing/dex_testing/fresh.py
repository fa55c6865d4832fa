"""Build a test world in a fresh Python process.

Feast imports a repository's definition modules by name and caches them per process, so each
world (one Feast repo) is built by ``python -m <module> <args>`` in a process of its own, with
no ``DEX_``/``MLFLOW_`` setting inherited from the caller (``mlflow.set_tracking_uri`` exports
one): the world's own configuration alone decides.
"""

from __future__ import annotations

import os
import subprocess
import sys


def run_module(module: str, *args: str, timeout_s: float) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEX_", "MLFLOW_"))}
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**env, "MLFLOW_DISABLE_TELEMETRY": "true", "FEAST_USAGE": "False"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{module} {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
