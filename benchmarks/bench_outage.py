"""A monitor outage under steady traffic: what the inference logger's spool keeps.

A real monitor process (SQLite, synchronous=FULL) takes events from a real
``InferenceLogger`` with a spool, fed at a steady rate from a background thread (one
request + one response event per inference, as the transformer logs them). The monitor is
SIGKILLed, stays down for OUTAGE_S, comes back on the same port; traffic goes on throughout.
Measured: events logged, stored (the monitor's own count), dropped (logger metrics), the
spool's peak size, and how long the replay took once the monitor answered. The target is
0 lost. The transformer's wiring of the logger (``--event-spool``) is tested elsewhere; this
drives the logger directly so the rate is the benchmark's, not the HTTP stack's.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

OUTAGE_S = 60.0
RATE_PER_S = 200  # inferences per second, two events each
WARM_S = 5.0


def _counter(name: str, labels: dict[str, str] | None = None) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def run() -> list[dict[str, object]]:
    from dex import metrics
    from dex_serving.eventlog import InferenceLogger, inference_events
    from dex_serving.spool import Spool
    from dex_testing.serving_world import build_in_subprocess
    from dexctl.polling import eventually
    from dexctl.processes import Child, free_ports

    with tempfile.TemporaryDirectory(prefix="dex-bench-outage-") as tmp:
        root = Path(tmp)
        world = build_in_subprocess(root / "world")
        port = free_ports(1)[0]
        url = f"http://127.0.0.1:{port}"
        argv = [
            sys.executable, "-m", "dex_serving.run", "monitor",
            "--model", world.model, "--tracking-uri", world.tracking_uri,
            "--state-dir", str(root / "monitor"), "--port", str(port),
            "--interval", "3600", "--trigger-command", "",
        ]  # fmt: skip
        env = {**os.environ, **world.env, "MLFLOW_DISABLE_TELEMETRY": "true"}

        def start_monitor() -> Child:
            child = Child("monitor", argv, log=root / "monitor.log", env=env)
            child.wait_ready(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout=120)
            return child

        monitor = start_monitor()
        spool = Spool(root / "spool", max_bytes=256 * 2**20)
        logger = InferenceLogger(f"{url}/events", spool=spool, probe_s=0.5)
        dropped_before = sum(
            _counter(f"{metrics.INFERENCE_EVENTS_DROPPED}_total", {"reason": r})
            for r in ("buffer_full", "send_failed", "spool_full", "rejected")
        )
        logged = 0
        peak_spool = 0
        stop = threading.Event()
        columns = world.feature_columns

        def traffic() -> None:
            nonlocal logged
            began = time.monotonic()
            while not stop.is_set():
                request, response = inference_events(
                    source="bench/outage",
                    service="churn-classifier",
                    version="1",
                    request={"instances": [{c: float(logged) for c in columns}]},
                    response={"predictions": [0]},
                )
                logger.log(request, response)
                logged += 1
                # Steady rate: wait for this inference's slot (pacing, not a condition).
                stop.wait(max(0.0, began + logged / RATE_PER_S - time.monotonic()))

        sender = threading.Thread(target=traffic)
        sender.start()
        try:
            time.sleep(WARM_S)  # traffic before the outage, by design of the scenario
            monitor.kill()
            down_at = time.monotonic()
            while time.monotonic() - down_at < OUTAGE_S:
                peak_spool = max(peak_spool, spool.size_bytes)
                stop.wait(0.5)
            monitor = start_monitor()
            back_at = time.monotonic()
            eventually(lambda: len(spool) == 0, timeout=300, what="the spool to drain")
            replay_s = time.monotonic() - back_at
            stop.set()
            sender.join(30)
            assert logger.flush(60)
            total = 2 * logged

            def stored() -> int:
                return int(httpx.get(f"{url}/events/count").json()["events"])

            eventually(lambda: stored() >= total, timeout=120, what="every event stored")
            dropped = (
                sum(
                    _counter(f"{metrics.INFERENCE_EVENTS_DROPPED}_total", {"reason": r})
                    for r in ("buffer_full", "send_failed", "spool_full", "rejected")
                )
                - dropped_before
            )
            return [
                {
                    "case": f"monitor SIGKILLed, down {OUTAGE_S:.0f} s, {RATE_PER_S} inferences/s",
                    "events logged": total,
                    "events stored": stored(),
                    "lost": total - stored(),
                    "dropped": int(dropped),
                    "spool peak MiB": round(peak_spool / 2**20, 2),
                    "spool bound MiB": spool.max_bytes // 2**20,
                    "replay s": round(replay_s, 2),
                    "target": "0 lost",
                }
            ]
        finally:
            stop.set()
            logger.close()
            monitor.stop()
