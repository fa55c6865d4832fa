"""A node whose every process was SIGKILLed (a crashed `dexctl`, a killed pytest) leaves its
claim behind; the next node start cleans up after it, so the machine ends as it began."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from dex_testing.devcluster import (
    Assets,
    ControlPlane,
    ControlPlaneConfig,
    eventually,
    stop_recorded,
    take_snapshot,
)
from dex_testing.devcluster.node import RUN_DIR, NodeBusyError, read_claim
from dexctl.processes import is_running

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="node")]


def test_next_start_recovers_from_a_killed_node(node_assets: Assets, tmp_path: Path) -> None:
    crashed_dir, next_dir = tmp_path / "crashed", tmp_path / "next"
    crashed_dir.mkdir()
    before = take_snapshot(crashed_dir)
    # Detached, as `dexctl dev cluster up` starts it: nothing stops it when this test's
    # reference goes away, so killing its processes is the whole crash.
    crashed = ControlPlane(
        ControlPlaneConfig(node=True, work_dir=crashed_dir, detached=True), node_assets
    )
    messages: list[str] = []
    survivor = ControlPlane(
        ControlPlaneConfig(node=True, work_dir=next_dir), node_assets, progress=messages.append
    )
    state = None
    try:
        state = crashed.start()
        with pytest.raises(NodeBusyError):  # one node per machine while it runs
            ControlPlane(
                ControlPlaneConfig(node=True, work_dir=tmp_path / "busy"), node_assets
            ).start()

        for record in state.processes:
            os.killpg(record.pid, signal.SIGKILL)
        eventually(
            lambda: not any(is_running(r) for r in state.processes), timeout=10, what="all dead"
        )
        assert read_claim() is not None  # the crash left its claim

        survivor.start()
        assert any("did not stop" in m for m in messages), messages
    finally:
        survivor.stop()
        if state is not None and read_claim() is not None:  # the survivor never took over
            stop_recorded(state)
    left = before.diff(take_snapshot(crashed_dir))
    assert left == [], "\n".join(left)
    assert not RUN_DIR.exists()
