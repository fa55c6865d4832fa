"""The monitor keeps what it holds for life out of the collector's way (``dex.heap``):
a full collection walking every imported module took 0.1 to 0.2 s of a core per event
batch, which the predictions served on the same node paid in their p99."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dex import heap
from dex_serving.monitor.service import create_app
from dex_serving.settings import MonitorSettings


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as before


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_freeze_exempts_what_is_alive_and_still_collects_later_cycles() -> None:
    kept = [[] for _ in range(1000)]
    frozen = heap.freeze()
    assert frozen >= len(kept)
    assert gc.get_freeze_count() == frozen

    later = _Node()
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None


def test_the_monitor_freezes_its_startup_heap_before_serving(tmp_path: Path) -> None:
    settings = MonitorSettings(model="models:/churn@champion", state_dir=tmp_path)
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000  # FastAPI, pydantic, prometheus_client...
