"""The drift trigger's cooldown starts with a launched command, not with an attempt."""

from __future__ import annotations

import sys
from pathlib import Path

from dex_serving.monitor.drift import DriftResult
from dex_serving.monitor.trigger import CommandTrigger


def drifted() -> DriftResult:
    return DriftResult(
        model="m",
        version="1",
        rows=300,
        reference_rows=300,
        method="wasserstein",
        threshold=0.1,
        drift_share_threshold=0.5,
        drift_share=0.9,
        drifted_columns=9,
        dataset_drift=True,
        scores={},
        computed_at="now",
        seconds=0.1,
    )


def test_a_failed_launch_does_not_start_the_cooldown(tmp_path: Path) -> None:
    trigger = CommandTrigger(str(tmp_path / "no-such-command"), 600.0, tmp_path)
    assert trigger.maybe_fire(drifted()) is False
    # Fixed command, same drift: the retry launches at once.
    trigger.command = f"{sys.executable} -c pass"
    assert trigger.maybe_fire(drifted()) is True
    trigger.processes[0].wait(timeout=60)
    # Now the cooldown holds.
    assert trigger.maybe_fire(drifted()) is False
