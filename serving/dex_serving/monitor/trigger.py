"""What happens when drift crosses the threshold.

Locally: a command (default: run the ``training`` pipeline). In a cluster the same hook will
bump the DexPipeline trigger instead. A cooldown keeps one long drift episode from starting a
retraining per computation.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import time
from pathlib import Path

from dex_serving import logs
from dex_serving.monitor.drift import DriftResult

log = logging.getLogger("dex.serving.monitor.trigger")


class CommandTrigger:
    def __init__(self, command: str | None, cooldown_s: float, log_dir: Path) -> None:
        self.command = command
        self.cooldown_s = cooldown_s
        self.log_dir = log_dir
        self._last: dict[tuple[str | None, str | None], float] = {}
        self.processes: list[subprocess.Popen[bytes]] = []

    def maybe_fire(self, result: DriftResult) -> bool:
        if not result.dataset_drift:
            return False
        key = (result.model, result.version)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.cooldown_s:
            log.info(
                logs.kv("drift trigger in cooldown", model=result.model, version=result.version)
            )
            return False
        if not self.command:
            self._last[key] = now
            log.warning(
                logs.kv("drift above threshold, no trigger configured", share=result.drift_share)
            )
            return True
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = self.log_dir / f"trigger-{int(time.time())}.log"
        env = {
            **os.environ,
            "DEX_DRIFT_MODEL": str(result.model),
            "DEX_DRIFT_VERSION": str(result.version),
            "DEX_DRIFT_SHARE": f"{result.drift_share:.4f}",
        }
        try:
            with out.open("ab") as sink:
                proc = subprocess.Popen(
                    shlex.split(self.command), stdout=sink, stderr=subprocess.STDOUT, env=env
                )
        except (OSError, ValueError) as exc:
            # No cooldown for a launch that never happened: the next computation retries.
            log.error(
                logs.kv("drift trigger failed to start", command=repr(self.command), error=exc)
            )
            return False
        # The cooldown starts with a launched retraining, not with an attempt.
        self._last[key] = now
        self.processes.append(proc)
        log.warning(
            logs.kv(
                "drift above threshold: trigger started",
                model=result.model,
                version=result.version,
                share=f"{result.drift_share:.3f}",
                bar=result.drift_share_threshold,
                command=repr(self.command),
                pid=proc.pid,
                log=str(out),
            )
        )
        return True
