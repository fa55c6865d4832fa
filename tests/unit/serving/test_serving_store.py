"""The monitor's SQLite store: atomic, idempotent per (id, type), durable across reopen."""

from __future__ import annotations

from pathlib import Path

from dex_serving.eventlog import inference_events
from dex_serving.monitor.store import EventStore


def _columns(model: str | None, version: str | None) -> list[str]:
    return ["a", "b"]


def test_add_is_idempotent_and_survives_reopen(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    pairs = [
        inference_events(
            source="t", service="churn", version="1",
            request={"instances": [{"a": i, "b": 2 * i}]}, response={"predictions": [0]},
        )
        for i in range(5)
    ]  # fmt: skip
    events = [e for pair in pairs for e in pair]
    assert store.add(events, _columns, None) == 10
    assert store.add(events[:4], _columns, None) == 0
    store.close()

    reopened = EventStore(tmp_path / "events.sqlite")
    assert reopened.counts() == {"events": 10, "requests": 5, "rows": 5}
    assert reopened.versions() == [("churn", "1")]
    window = reopened.window("churn", "1", 3)
    assert window == [{"a": 2.0, "b": 4.0}, {"a": 3.0, "b": 6.0}, {"a": 4.0, "b": 8.0}]


def test_default_version_applies_to_events_without_one(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    request, _ = inference_events(
        source="t", service="churn", version=None, request={"instances": [[1, 2]]}, response={}
    )
    store.add([request], _columns, "7")
    assert store.window("churn", "7", 10) == [{"a": 1.0, "b": 2.0}]


def test_a_large_batch_with_repeats_stores_each_event_once(tmp_path: Path) -> None:
    # More ids than one lookup of stored ids takes, a repeat inside the batch, and a retry.
    store = EventStore(tmp_path / "events.sqlite")
    events = [
        e
        for i in range(1000)
        for e in inference_events(
            source="t", service="churn", version="1",
            request={"instances": [{"a": i, "b": i}]}, response={"predictions": [0]},
        )
    ]  # fmt: skip
    assert store.add([*events, events[0], events[1]], _columns, None) == 2000
    assert store.add(events[::-1], _columns, None) == 0
    assert store.counts() == {"events": 2000, "requests": 1000, "rows": 1000}
    assert store.window("churn", "1", 2) == [{"a": 998.0, "b": 998.0}, {"a": 999.0, "b": 999.0}]
