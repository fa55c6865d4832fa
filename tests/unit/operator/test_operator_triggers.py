"""Drift triggers: exactly one run per crossing, none while suspended, while a run is active
or within the cooldown; a lost status never makes a second run of one crossing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dex_operator import triggers
from dex_operator.crd.models import DexPipelineSpec, TriggerStatus
from dex_operator.kfp import Run

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
KEY = "dex.retrain"


def spec(**extra: object) -> DexPipelineSpec:
    return DexPipelineSpec.model_validate(
        {
            "pipeline": {"name": "training"},
            "triggers": [{"dexModel": "churn", "threshold": 0.3, "cooldown": "30m"}],
            **extra,
        }
    )


class Runs:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []

    def start(self, name: str, description: str) -> Run:
        self.started.append((name, description))
        return Run(run_id=f"r{len(self.started)}", display_name=name, state="PENDING")


def step(
    share: float | None,
    before: list[TriggerStatus],
    runs: Runs,
    *,
    existing: list[Run] | None = None,
    now: datetime = NOW,
    **extra: object,
) -> tuple[list[TriggerStatus], list[tuple[str, str, str]]]:
    return triggers.evaluate(
        spec(**extra),
        before,
        key=KEY,
        runs=existing or [],
        read_share=lambda _name: (share, "monitor has no series"),
        start_run=runs.start,
        now=now,
    )


def test_one_run_per_crossing_and_rearmed_below_the_threshold() -> None:
    runs = Runs()
    state, events = step(0.1, [], runs)
    assert (state[0].above, runs.started) == (False, [])
    state, events = step(0.5, state, runs)
    assert [n for n, _ in runs.started] == ["dex.retrain.drift-churn-1"]
    assert "drift share 0.500 of DexModel churn crossed 0.3" in runs.started[0][1]
    assert [e[1] for e in events] == ["DriftTriggered"]
    assert (state[0].crossings, state[0].last_run_id) == (1, "r1")
    # Still above: the same crossing, no second run.
    state, events = step(0.6, state, runs)
    assert (len(runs.started), events) == (1, [])
    # Below re-arms; the next crossing after the cooldown runs again.
    state, _ = step(0.2, state, runs, now=NOW + timedelta(minutes=40))
    state, _ = step(0.7, state, runs, now=NOW + timedelta(minutes=41))
    assert [n for n, _ in runs.started][-1] == "dex.retrain.drift-churn-2"


def test_a_crossing_within_the_cooldown_while_active_or_suspended_is_recorded_not_run() -> None:
    runs = Runs()
    state, _ = step(0.5, [], runs)
    state, _ = step(0.1, state, runs, now=NOW + timedelta(minutes=5))
    state, events = step(0.5, state, runs, now=NOW + timedelta(minutes=10))
    assert len(runs.started) == 1
    assert "cooldown 30m" in state[0].message
    assert [e[1] for e in events] == ["DriftTriggerSkipped"]

    active = [Run(run_id="x", display_name="dex.retrain.manual", state="RUNNING")]
    _, events = step(0.5, [], Runs(), existing=active)
    assert "run dex.retrain.manual is still RUNNING" in events[0][2]
    fresh = Runs()
    state, _ = step(0.5, [], fresh, suspend=True)
    assert fresh.started == []
    assert "suspended" in state[0].message


def test_a_run_already_made_for_this_crossing_is_adopted_not_repeated() -> None:
    made = Run(run_id="r9", display_name="dex.retrain.drift-churn-1", state="PENDING")
    runs = Runs()
    state, _ = step(0.5, [], runs, existing=[made])
    assert runs.started == []
    assert (state[0].crossings, state[0].last_run_id) == (1, "r9")


def test_an_unreadable_share_says_why_and_runs_nothing() -> None:
    runs = Runs()
    state, events = step(None, [], runs)
    assert (state[0].drift_share, state[0].message, events) == (None, "monitor has no series", [])
    assert runs.started == []
