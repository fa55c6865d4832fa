"""The monitor: durable event storage across a crash, and drift detection on real traffic."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from dex.metrics import FEATURE_DRIFT_SCORE
from dex_serving.eventlog import REQUEST_TYPE, CloudEvent
from dex_testing.serving_world import World
from dexctl.local_serving import ServingURLs, compute_drift, predict, wait_for_rows
from dexctl.polling import eventually
from dexctl.processes import Child, free_ports

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="serving")]


def _counts(monitor: str) -> dict[str, int]:
    return dict(httpx.get(f"{monitor}/events/count", timeout=5).json())


def _compute(stack: ServingURLs) -> dict[str, Any]:
    results = compute_drift(stack)
    assert len(results) == 1, results
    return dict(results[0])


def test_drifted_batch_is_flagged_and_normal_batch_is_not(
    stack: ServingURLs, world: World, trigger_marker: Path
) -> None:
    assert stack.monitor is not None
    window = 1000
    normal, drifted = world.normal_ids[:window], world.drifted_ids[:window]
    assert len(normal) == len(drifted) == window

    before = _counts(stack.monitor)["rows"]
    predictions = predict(stack, normal)
    assert [p["customer_id"] for p in predictions] == normal
    wait_for_rows(stack, before + window, timeout_s=30)
    calm = _compute(stack)
    assert calm["rows"] == window
    assert calm["method"] == "wasserstein"
    assert calm["dataset_drift"] is False, calm
    assert not trigger_marker.exists()

    predict(stack, drifted)
    wait_for_rows(stack, before + 2 * window, timeout_s=30)
    shifted = _compute(stack)
    assert shifted["dataset_drift"] is True, shifted
    assert float(shifted["drift_share"]) > float(calm["drift_share"])
    assert shifted["triggered"] is True
    eventually(trigger_marker.exists, timeout=30, what="the trigger command to run")

    metrics = httpx.get(f"{stack.monitor}/metrics").text
    share_line = next(line for line in metrics.splitlines() if line.startswith("dex_drift_share{"))
    assert 'model="churn-classifier"' in share_line
    assert 'version="1"' in share_line
    assert float(share_line.rsplit(" ", 1)[1]) == pytest.approx(float(shifted["drift_share"]))
    feature_line = next(
        line
        for line in metrics.splitlines()
        if line.startswith(f"{FEATURE_DRIFT_SCORE}{{") and 'feature="sessions_7d"' in line
    )
    assert 'version="1"' in feature_line
    assert 'method="wasserstein"' in feature_line
    assert float(feature_line.rsplit(" ", 1)[1]) == pytest.approx(
        float(shifted["scores"]["sessions_7d"])
    )
    report = httpx.get(f"{stack.monitor}/report")
    assert report.status_code == 200
    assert "<html" in report.text[:2000].lower()


class _Monitor:
    def __init__(self, world: World, state_dir: Path, port: int) -> None:
        self.argv = [
            sys.executable, "-m", "dex_serving.run", "monitor",
            "--model", world.model, "--tracking-uri", world.tracking_uri,
            "--state-dir", str(state_dir), "--port", str(port),
            "--interval", "3600", "--trigger-command", "",
        ]  # fmt: skip
        self.env = {**os.environ, **world.env, "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.url = f"http://127.0.0.1:{port}"
        self.log = state_dir.parent / f"monitor-{port}.log"
        self.child: Child | None = None

    def start(self) -> None:
        self.child = Child("monitor", self.argv, log=self.log, env=self.env)
        self.child.wait_ready(
            lambda: httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200, timeout=90
        )

    def kill(self) -> None:
        assert self.child is not None
        self.child.kill()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(grace=20)


def test_no_acknowledged_event_is_lost_across_a_monitor_crash(world: World, tmp_path: Path) -> None:
    total, senders = 1200, 6
    state = tmp_path / "monitor"
    monitor = _Monitor(world, state, free_ports(1)[0])
    monitor.start()
    acked: list[str] = []
    lock = threading.Lock()
    columns = world.feature_columns
    failures: list[str] = []

    def send(worker: int) -> None:
        with httpx.Client(timeout=5) as client:
            for n in range(total // senders):
                event = CloudEvent(
                    id=str(uuid.uuid4()),
                    source="test/durability",
                    type=REQUEST_TYPE,
                    inferenceservicename="churn-classifier",
                    modelversion="1",
                    data={"instances": [{c: float(worker * 1000 + n) for c in columns}]},
                )
                deadline = time.monotonic() + 120
                while True:
                    try:
                        response = client.post(
                            monitor.url,
                            content=json.dumps(event.data).encode(),
                            headers=event.binary_headers(),
                        )
                        if response.status_code == 200:
                            with lock:
                                acked.append(event.id)
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        failures.append(event.id)
                        return
                    time.sleep(0.05)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(senders)]
    try:
        for t in threads:
            t.start()
        eventually(
            lambda: len(acked) >= total // 3, timeout=60, what="a third of the events acknowledged"
        )
        monitor.kill()
        killed_at = len(acked)
        monitor.start()
        for t in threads:
            t.join(180)
        assert not failures
        assert len(acked) == total
        assert killed_at < total, "the crash happened after all events were sent"
        counts = httpx.get(f"{monitor.url}/events/count").json()
        assert counts["events"] == total
        assert counts["rows"] == total
    finally:
        monitor.stop()
    with sqlite3.connect(state / "events.sqlite") as db:
        stored = {row[0] for row in db.execute("SELECT id FROM events")}
    assert stored == set(acked)
