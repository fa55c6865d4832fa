"""The monitor: durable event storage across a crash, and drift detection on real traffic."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dex.metrics import (
    FEATURE_DRIFT_SCORE,
    INFERENCE_EVENTS_DROPPED,
    INFERENCE_EVENTS_REPLAYED,
    INFERENCE_EVENTS_SENT,
    INFERENCE_EVENTS_SPOOLED,
    MONITOR_STORAGE_ERRORS,
)
from dex_serving.eventlog import (
    BATCH_CONTENT_TYPE,
    REQUEST_TYPE,
    CloudEvent,
    InferenceLogger,
    inference_events,
)
from dex_serving.spool import Spool
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
    def __init__(self, world: World, state_dir: Path, port: int, model: str | None = None) -> None:
        self.argv = [
            sys.executable, "-m", "dex_serving.run", "monitor",
            "--model", model or world.model, "--tracking-uri", world.tracking_uri,
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


def test_monitor_is_ready_before_its_model_is_registered(world: World, tmp_path: Path) -> None:
    """A platform installs the monitor before any model exists: it must become Ready, refuse
    events with a 503 the sender retries (nothing acknowledged is dropped), and take them once
    the registry has the model."""
    import mlflow

    name = world.model.removeprefix("models:/").split("@")[0].split("/")[0]
    alias = f"later-{uuid.uuid4().hex[:8]}"
    monitor = _Monitor(world, tmp_path / "monitor", free_ports(1)[0], f"models:/{name}@{alias}")
    event = CloudEvent(
        id=str(uuid.uuid4()),
        source="test/lazy",
        type=REQUEST_TYPE,
        inferenceservicename=name,
        modelversion="1",
        data={"instances": [dict.fromkeys(world.feature_columns, 1.0)]},
    )

    def post() -> httpx.Response:
        return httpx.post(
            monitor.url, content=json.dumps(event.data).encode(), headers=event.binary_headers()
        )

    client = mlflow.MlflowClient(tracking_uri=world.tracking_uri, registry_uri=world.tracking_uri)
    monitor.start()
    try:
        ready = httpx.get(f"{monitor.url}/readyz").json()
        assert ready["ready"] is True, ready
        assert ready["version"] is None, ready
        refused = post()
        assert refused.status_code == 503, refused.text
        assert refused.json()["reason"] == "model"
        assert _counts(monitor.url)["events"] == 0
        client.set_registered_model_alias(name, alias, "1")
        accepted = post()
        assert accepted.status_code == 200, accepted.text
        assert _counts(monitor.url)["events"] == 1
        assert httpx.get(f"{monitor.url}/readyz").json()["version"] == "1"
    finally:
        monitor.stop()
        client.delete_registered_model_alias(name, alias)


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


def _sample(metrics_text: str, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    found = [line for line in metrics_text.splitlines() if line.startswith(prefix)]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


def _logger_counts() -> dict[str, float]:
    from prometheus_client import REGISTRY

    def value(name: str, labels: dict[str, str] | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    return {
        "sent": value(f"{INFERENCE_EVENTS_SENT}_total"),
        "spooled": value(f"{INFERENCE_EVENTS_SPOOLED}_total"),
        "replayed": value(f"{INFERENCE_EVENTS_REPLAYED}_total"),
        "dropped": sum(
            value(f"{INFERENCE_EVENTS_DROPPED}_total", {"reason": r})
            for r in ("buffer_full", "send_failed", "spool_full", "rejected")
        ),
    }


def test_a_monitor_outage_loses_no_event_with_a_spool(world: World, tmp_path: Path) -> None:
    """Steady traffic through a SIGKILLed monitor: batches wait on disk and all arrive."""
    monitor = _Monitor(world, tmp_path / "monitor", free_ports(1)[0])
    monitor.start()
    spool = Spool(tmp_path / "spool", max_bytes=64 * 2**20)
    logger = InferenceLogger(f"{monitor.url}/events", spool=spool, linger_s=0.05, probe_s=0.2)
    before = _logger_counts()
    logged: list[str] = []
    stop = threading.Event()
    columns = world.feature_columns

    def traffic() -> None:
        n = 0
        while not stop.is_set():
            request, response = inference_events(
                source="test/outage",
                service="churn-classifier",
                version="1",
                request={"instances": [{c: float(n) for c in columns}]},
                response={"predictions": [0]},
            )
            logger.log(request, response)
            logged.append(request.id)
            n += 1
            stop.wait(0.005)  # pacing the traffic, not waiting for a condition

    sender = threading.Thread(target=traffic)
    try:
        sender.start()
        eventually(lambda: _logger_counts()["sent"] - before["sent"] > 100, timeout=60)
        monitor.kill()
        eventually(
            lambda: _logger_counts()["spooled"] - before["spooled"] > 400,
            timeout=60,
            what="events spooled while the monitor is down",
        )
        assert len(spool) > 0
        monitor.start()
        eventually(lambda: _logger_counts()["replayed"] - before["replayed"] > 400, timeout=60)
        stop.set()
        sender.join(10)
        assert logger.flush(30)
        eventually(lambda: len(spool) == 0, timeout=60, what="the spool to drain")
        counts = {k: v - before[k] for k, v in _logger_counts().items()}
        assert counts["dropped"] == 0, counts
        assert counts["sent"] + counts["replayed"] == 2 * len(logged), counts
        assert spool.size_bytes == 0
        stored = httpx.get(f"{monitor.url}/events/count").json()
        assert stored["requests"] == len(logged), (stored, counts)
    finally:
        stop.set()
        logger.close()
        monitor.stop()
    with sqlite3.connect(tmp_path / "monitor" / "events.sqlite") as db:
        ids = {row[0] for row in db.execute("SELECT id FROM events")}
    assert ids == set(logged)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real, small filesystem (tmpfs) to fill up; unmounted whatever happens."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "dex-test-disk", str(mount_point)],
        check=True,
        capture_output=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, capture_output=True)


def test_monitor_on_a_full_disk_answers_503_and_keeps_serving_reads(
    world: World, small_disk: Path
) -> None:
    monitor = _Monitor(world, small_disk / "monitor", free_ports(1)[0])
    monitor.start()
    filler = small_disk / "filler"
    columns = world.feature_columns
    batch = [
        e
        for n in range(200)
        for e in inference_events(
            source="test/disk",
            service="churn-classifier",
            version="1",
            request={"instances": [{c: float(n) for c in columns}]},
            response={"predictions": [0]},
        )
    ]
    body = "[" + ",".join(e.model_dump_json(exclude_none=True) for e in batch) + "]"
    headers = {"content-type": BATCH_CONTENT_TYPE}
    try:
        with filler.open("wb") as out, contextlib.suppress(OSError):
            while True:  # ends with ENOSPC: the disk is full
                out.write(b"\0" * 2**20)
                out.flush()
        refused = httpx.post(f"{monitor.url}/events", content=body, headers=headers, timeout=30)
        assert refused.status_code == 503, refused.text
        assert refused.json()["reason"] == "storage"
        assert "full" in refused.json()["error"], refused.json()
        assert httpx.get(f"{monitor.url}/events/count").json()["events"] == 0
        assert httpx.get(f"{monitor.url}/healthz").status_code == 200
        metrics_text = httpx.get(f"{monitor.url}/metrics").text
        assert _sample(metrics_text, f"{MONITOR_STORAGE_ERRORS}_total") == 1.0
        filler.unlink()
        stored = httpx.post(f"{monitor.url}/events", content=body, headers=headers, timeout=30)
        assert stored.status_code == 200, stored.text
        assert httpx.get(f"{monitor.url}/events/count").json()["events"] == len(batch)
    finally:
        monitor.stop()
