"""The rollout engine, as a pure function: scenario tests and hypothesis properties.

A tiny simulated KServe (``FakeWorld``) honours the last plan after one tick and makes a
new canary Ready after a configurable delay; it exists only to feed ``decide`` plausible
observations, the engine itself is the real code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dex_operator.crd.models import AnalysisGate, AnalysisResult, DexModelSpec, DexModelStatus
from dex_operator.rollout import (
    Decision,
    ManualAction,
    Observed,
    Plan,
    Target,
    decide,
    parse_duration,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
V1 = Target("s3://models/churn/1", "1")
V2 = Target("s3://models/churn/2", "2")
V3 = Target("s3://models/churn/3", "3")


def make_spec(
    steps: list[int] | None = None,
    *,
    failure_limit: int = 2,
    gates: int = 1,
    strategy: str = "Canary",
    auto_rollback: bool = True,
    paused: bool = False,
    progress_deadline: str = "10m",
) -> DexModelSpec:
    return DexModelSpec.model_validate(
        {
            "model": {"name": "churn-classifier", "version": "1"},
            "rollout": {
                "strategy": strategy,
                "steps": steps or [10, 50],
                "interval": "30s",
                "failureLimit": failure_limit,
                "autoRollback": auto_rollback,
                "paused": paused,
                "progressDeadline": progress_deadline,
                "analysis": [
                    AnalysisGate(name=f"g{i}", metric="errorRate", threshold=0.05).model_dump(
                        by_alias=True
                    )
                    for i in range(gates)
                ],
            },
        }
    )


def result(passed: bool, value: float = 0.01) -> list[AnalysisResult]:
    return [
        AnalysisResult(name="g0", metric="errorRate", value=value, threshold=0.05, passed=passed)
    ]


@dataclass
class FakeWorld:
    """Stands in for KServe: applies the plan one tick late, canary Ready after a delay."""

    ready_delay: int = 1
    plan: Plan | None = None
    applied: Plan | None = None
    canary_age: int = 0
    weights: list[int] = field(default_factory=list)
    analyses: list[bool] = field(default_factory=list)

    def observe(self) -> Observed:
        if self.applied is None:
            return Observed()
        canary = self.applied.canary
        return Observed(
            exists=True,
            current=self.applied == self.plan,
            stable_ready=True,
            canary_ready=canary is not None and self.canary_age >= self.ready_delay,
            canary_traffic=self.applied.weight if canary else None,
        )

    def submit(self, plan: Plan | None) -> None:
        if plan is not None:
            self.plan = plan

    def tick(self) -> None:
        if self.plan != self.applied:
            previous = self.applied.canary if self.applied else None
            self.applied = self.plan
            if self.plan is not None and self.plan.canary != previous:
                self.canary_age = 0
            canary_weight = self.plan.weight if self.plan and self.plan.canary else None
            if canary_weight is not None and self.weights[-1:] != [canary_weight]:
                self.weights.append(canary_weight)
        self.canary_age += 1


def run(
    spec: DexModelSpec,
    status: DexModelStatus,
    target: Target,
    world: FakeWorld,
    outcomes: list[bool],
    *,
    max_ticks: int = 400,
    step_seconds: float = 10.0,
) -> tuple[DexModelStatus, list[Decision]]:
    """Drive decide() until the rollout settles; analysis outcomes are consumed in order."""
    now, decisions = T0, []
    for _ in range(max_ticks):
        d = decide(spec, status, target, world.observe(), now=now)
        if d.analysis_due:
            passed = outcomes.pop(0) if outcomes else True
            world.analyses.append(passed)
            d = decide(
                spec,
                status,
                target,
                world.observe(),
                now=now,
                analysis=result(passed, 0.01 if passed else 0.3),
            )
        decisions.append(d)
        # Persisting status is a JSON round trip, exactly as the API server stores it.
        status = DexModelStatus.model_validate(d.status.model_dump(by_alias=True, mode="json"))
        world.submit(d.plan)
        world.tick()
        now += timedelta(seconds=step_seconds)
        if (
            status.phase in ("Promoted", "RolledBack", "Failed")
            and status.canary_storage_uri is None
            and world.applied == world.plan
        ):
            break
    return status, decisions


def promoted_on(target: Target) -> DexModelStatus:
    return DexModelStatus(
        phase="Promoted", stable_storage_uri=target.storage_uri, stable_version=target.version
    )


def reasons(decisions: list[Decision]) -> list[str]:
    return [e.reason for d in decisions for e in d.events]


# --------------------------------------------------------------------------- scenarios


def test_first_deploy_serves_target_then_promotes_when_ready() -> None:
    spec = make_spec()
    d = decide(spec, DexModelStatus(), V1, Observed(), now=T0)
    assert d.plan == Plan(V1)
    assert d.status.phase == "Pending"
    assert d.status.stable_version == "1"
    not_ready = decide(spec, d.status, V1, Observed(exists=True, current=True), now=T0)
    assert not_ready.status.phase == "Pending"
    ready = decide(
        spec, d.status, V1, Observed(exists=True, current=True, stable_ready=True), now=T0
    )
    assert ready.status.phase == "Promoted"
    assert [e.reason for e in ready.events] == ["Promoted"]
    ready_cond = {c.type: c.status for c in ready.status.conditions}
    assert ready_cond["Ready"] == "True"


def test_stale_observation_never_promotes() -> None:
    d = decide(make_spec(), DexModelStatus(), V1, Observed(), now=T0)
    stale = Observed(exists=True, current=False, stable_ready=True)
    assert decide(make_spec(), d.status, V1, stale, now=T0).status.phase == "Pending"


def test_new_version_deploys_canary_at_zero_until_ready() -> None:
    spec = make_spec([10, 50])
    d = decide(
        spec, promoted_on(V1), V2, Observed(exists=True, current=True, stable_ready=True), now=T0
    )
    assert d.plan == Plan(V1, V2, 0)
    assert d.status.phase == "Progressing"
    # Not ready: weight stays 0 until the progress deadline (default 10m).
    later = decide(
        spec,
        d.status,
        V2,
        Observed(exists=True, current=True, stable_ready=True),
        now=T0 + timedelta(minutes=9, seconds=59),
    )
    assert later.plan == Plan(V1, V2, 0)
    assert later.requeue_after == pytest.approx(1.0)
    assert later.status.phase == "Progressing"
    ready = decide(
        spec,
        d.status,
        V2,
        Observed(exists=True, current=True, stable_ready=True, canary_ready=True, canary_traffic=0),
        now=T0,
    )
    assert ready.plan == Plan(V1, V2, 10)
    assert ready.status.current_step == 0
    # Ready, but the route (or KServe) does not name the canary at 0% yet (an operator
    # restarted between creating the canary and routing it): it is routed at 0 first, so the
    # weights go 0 -> 10 whatever the restarts.
    unrouted = decide(
        spec,
        d.status,
        V2,
        Observed(exists=True, current=True, stable_ready=True, canary_ready=True),
        now=T0,
    )
    assert unrouted.plan == Plan(V1, V2, 0)
    assert unrouted.status.canary_weight == 0


def test_hold_starts_only_when_weight_is_observed() -> None:
    spec = make_spec([10, 50])
    st_ = promoted_on(V1).model_copy(
        update={
            "canary_storage_uri": V2.storage_uri,
            "canary_version": "2",
            "canary_weight": 10,
            "current_step": 0,
            "phase": "Progressing",
        }
    )
    lagging = Observed(
        exists=True, current=True, stable_ready=True, canary_ready=True, canary_traffic=0
    )
    assert decide(spec, st_, V2, lagging, now=T0).status.step_started_at is None
    shown = Observed(
        exists=True, current=True, stable_ready=True, canary_ready=True, canary_traffic=10
    )
    held = decide(spec, st_, V2, shown, now=T0).status
    assert held.step_started_at == T0
    early = decide(spec, held, V2, shown, now=T0 + timedelta(seconds=29))
    assert not early.analysis_due
    assert early.requeue_after == pytest.approx(1.0)
    due = decide(spec, held, V2, shown, now=T0 + timedelta(seconds=30))
    assert due.analysis_due
    assert due.status == held


NOT_READY = Observed(exists=True, current=True, stable_ready=True)
LAGGING = Observed(
    exists=True, current=True, stable_ready=True, canary_ready=True, canary_traffic=0
)


def condition(status: DexModelStatus, kind: str) -> tuple[str, str, str]:
    (cond,) = [c for c in status.conditions if c.type == kind]
    return cond.status, cond.reason, cond.message


def test_a_canary_never_ready_rolls_back_at_the_progress_deadline() -> None:
    spec = make_spec([10, 50], progress_deadline="5m")
    started = decide(spec, promoted_on(V1), V2, NOT_READY, now=T0)
    assert started.status.waiting_since == T0
    waiting = decide(spec, started.status, V2, NOT_READY, now=T0 + timedelta(minutes=4))
    assert waiting.plan == Plan(V1, V2, 0)
    assert waiting.requeue_after == pytest.approx(60.0)
    late = decide(spec, waiting.status, V2, NOT_READY, now=T0 + timedelta(minutes=5))
    assert late.plan == Plan(V1)
    assert late.status.phase == "RolledBack"
    assert late.status.rolled_back_storage_uri == V2.storage_uri
    message = (
        "canary version 2 did not become Ready within 5m (spec.rollout.progressDeadline); "
        "stable 1 serves 100%"
    )
    assert condition(late.status, "Degraded") == ("True", "ProgressDeadlineExceeded", message)
    assert [(e.type, e.reason, e.message) for e in late.events] == [
        ("Warning", "RolledBack", message)
    ]


def test_a_step_weight_never_shown_hits_the_deadline_counted_from_the_step() -> None:
    spec = make_spec([10, 50], progress_deadline="2m")
    d = decide(spec, promoted_on(V1), V2, NOT_READY, now=T0)
    # Ready 90 s later: the first step starts and the deadline starts afresh with it.
    step = decide(spec, d.status, V2, LAGGING, now=T0 + timedelta(seconds=90))
    assert step.plan == Plan(V1, V2, 10)
    assert step.status.waiting_since == T0 + timedelta(seconds=90)
    lag = decide(spec, step.status, V2, LAGGING, now=T0 + timedelta(seconds=209))
    assert lag.plan == Plan(V1, V2, 10)
    assert lag.requeue_after == pytest.approx(1.0)
    late = decide(spec, lag.status, V2, LAGGING, now=T0 + timedelta(seconds=210))
    assert late.status.phase == "RolledBack"
    assert condition(late.status, "Degraded")[2].startswith(
        "canary version 2 did not serve 10% Ready within 2m"
    )


def test_holds_and_analysis_do_not_count_against_the_deadline() -> None:
    spec = make_spec([10, 50], progress_deadline="1m")
    shown = Observed(
        exists=True, current=True, stable_ready=True, canary_ready=True, canary_traffic=10
    )
    d = decide(spec, promoted_on(V1), V2, LAGGING, now=T0)
    d = decide(spec, d.status, V2, LAGGING, now=T0)
    held = decide(spec, d.status, V2, shown, now=T0 + timedelta(seconds=50))
    assert held.status.step_started_at is not None
    assert held.status.waiting_since is None
    # Long after the deadline would have passed, the hold still ends in analysis.
    due = decide(spec, held.status, V2, shown, now=T0 + timedelta(minutes=30))
    assert due.analysis_due
    assert due.status.phase == "Progressing"


def test_deadline_without_auto_rollback_stops_in_failed() -> None:
    spec = make_spec([10, 50], progress_deadline="1m", auto_rollback=False)
    d = decide(spec, promoted_on(V1), V2, NOT_READY, now=T0)
    late = decide(spec, d.status, V2, NOT_READY, now=T0 + timedelta(minutes=1))
    assert late.plan == Plan(V1, V2, 0)
    assert late.status.phase == "Failed"
    assert condition(late.status, "Degraded")[:2] == ("True", "ProgressDeadlineExceeded")
    assert [e.reason for e in late.events] == ["ProgressDeadlineExceeded"]


def test_a_pause_restarts_the_deadline() -> None:
    d = decide(make_spec([10, 50], progress_deadline="1m"), promoted_on(V1), V2, NOT_READY, now=T0)
    paused = decide(
        make_spec([10, 50], progress_deadline="1m", paused=True),
        d.status,
        V2,
        NOT_READY,
        now=T0 + timedelta(seconds=30),
    )
    assert paused.status.waiting_since is None
    spec = make_spec([10, 50], progress_deadline="1m")
    resumed = decide(spec, paused.status, V2, NOT_READY, now=T0 + timedelta(hours=1))
    assert resumed.status.phase == "Progressing"
    assert resumed.status.waiting_since == T0 + timedelta(hours=1)


def test_a_first_deployment_past_the_deadline_is_degraded_then_recovers() -> None:
    spec = make_spec([10, 50], progress_deadline="1m")
    d = decide(spec, DexModelStatus(), V1, Observed(exists=True, current=True), now=T0)
    late = decide(
        spec, d.status, V1, Observed(exists=True, current=True), now=T0 + timedelta(minutes=1)
    )
    assert late.status.phase == "Pending"
    assert condition(late.status, "Degraded") == (
        "True",
        "ProgressDeadlineExceeded",
        "version 1 not Ready within 1m (spec.rollout.progressDeadline)",
    )
    assert [e.reason for e in late.events] == ["ProgressDeadlineExceeded"]
    again = decide(
        spec, late.status, V1, Observed(exists=True, current=True), now=T0 + timedelta(minutes=2)
    )
    assert again.events == []  # told once
    ready = decide(spec, again.status, V1, NOT_READY, now=T0 + timedelta(minutes=3))
    assert ready.status.phase == "Promoted"
    assert condition(ready.status, "Degraded")[0] == "False"


def test_passing_rollout_takes_every_step_in_order() -> None:
    world = FakeWorld(applied=Plan(V1), plan=Plan(V1))
    status, decisions = run(make_spec([5, 20, 60, 100]), promoted_on(V1), V2, world, [])
    assert status.phase == "Promoted"
    assert status.stable_version == "2"
    assert world.weights == [0, 5, 20, 60, 100]
    assert world.plan == Plan(V2)
    assert reasons(decisions).count("StepStarted") == 4
    assert reasons(decisions)[-1] == "Promoted"


def test_failing_rollout_rolls_back_with_event_and_condition() -> None:
    world = FakeWorld(applied=Plan(V1), plan=Plan(V1))
    status, decisions = run(
        make_spec([10, 50], failure_limit=2), promoted_on(V1), V2, world, [True, False, False]
    )
    assert status.phase == "RolledBack"
    assert status.stable_version == "1"
    assert world.plan == Plan(V1)  # stable 100%, canary gone
    assert world.weights == [0, 10, 50]
    rb = [e for d in decisions for e in d.events if e.reason == "RolledBack"]
    assert len(rb) == 1
    assert "g0 (errorRate) = 0.3" in rb[0].message
    failed = [e for d in decisions for e in d.events if e.reason == "AnalysisFailed"]
    assert len(failed) == 2
    assert all(e.type == "Warning" for e in failed)
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert degraded.status == "True"
    assert degraded.reason == "AnalysisFailed"
    assert status.rolled_back_storage_uri == V2.storage_uri


def test_rolled_back_version_is_not_retried_but_a_new_one_is() -> None:
    world = FakeWorld(applied=Plan(V1), plan=Plan(V1))
    status, _ = run(make_spec([10], failure_limit=1), promoted_on(V1), V2, world, [False])
    again = decide(
        make_spec([10]), status, V2, Observed(exists=True, current=True, stable_ready=True), now=T0
    )
    assert again.plan == Plan(V1)
    assert again.status.phase == "RolledBack"
    assert not again.events
    fresh = decide(
        make_spec([10]), status, V3, Observed(exists=True, current=True, stable_ready=True), now=T0
    )
    assert fresh.plan == Plan(V1, V3, 0)
    assert fresh.status.phase == "Progressing"


def test_no_data_counts_as_failure() -> None:
    spec = make_spec([10], failure_limit=1)
    world = FakeWorld(applied=Plan(V1), plan=Plan(V1))
    status = promoted_on(V1)
    now = T0
    for _ in range(20):
        d = decide(spec, status, V2, world.observe(), now=now)
        if d.analysis_due:
            nodata = [
                AnalysisResult(
                    name="g0",
                    metric="errorRate",
                    value=None,
                    threshold=0.05,
                    passed=False,
                    message="no data",
                )
            ]
            d = decide(spec, status, V2, world.observe(), now=now, analysis=nodata)
        status = d.status
        world.submit(d.plan)
        world.tick()
        now += timedelta(seconds=40)
        if status.phase == "RolledBack":
            break
    assert status.phase == "RolledBack"
    assert "no data" in status.message


def test_without_auto_rollback_stops_in_failed_at_weight() -> None:
    world = FakeWorld(applied=Plan(V1), plan=Plan(V1))
    spec = make_spec([10, 50], failure_limit=1, auto_rollback=False)
    status, _ = run(spec, promoted_on(V1), V2, world, [False], max_ticks=30)
    assert status.phase == "Failed"
    assert world.plan == Plan(V1, V2, 10)
    aborted = decide(spec, status, V2, world.observe(), now=T0, action="abort")
    assert aborted.status.phase == "RolledBack"
    assert aborted.plan == Plan(V1)


@pytest.mark.parametrize(
    ("action", "phase", "stable"), [("promote", "Promoted", "2"), ("abort", "RolledBack", "1")]
)
def test_manual_action(action: ManualAction, phase: str, stable: str) -> None:
    spec = make_spec([10, 50])
    d = decide(
        spec, promoted_on(V1), V2, Observed(exists=True, current=True, stable_ready=True), now=T0
    )
    acted = decide(spec, d.status, V2, Observed(exists=True, current=True), now=T0, action=action)
    assert acted.status.phase == phase
    assert acted.status.stable_version == stable
    assert acted.status.last_action == f"{action}@{V2.storage_uri}"


def test_paused_holds_the_step() -> None:
    spec = make_spec([10, 50], paused=True)
    d = decide(spec, promoted_on(V1), V2, Observed(exists=True, current=True), now=T0)
    ready = Observed(
        exists=True, current=True, stable_ready=True, canary_ready=True, canary_traffic=0
    )
    paused = decide(spec, d.status, V2, ready, now=T0 + timedelta(hours=2))
    assert paused.plan == Plan(V1, V2, 0)
    assert any(c.reason == "Paused" for c in paused.status.conditions)


def test_immediate_strategy_swaps_without_steps() -> None:
    spec = make_spec(strategy="Immediate")
    d = decide(
        spec, promoted_on(V1), V2, Observed(exists=True, current=True, stable_ready=True), now=T0
    )
    assert d.plan == Plan(V2)
    assert d.status.phase == "Progressing"
    done = decide(
        spec, d.status, V2, Observed(exists=True, current=True, stable_ready=True), now=T0
    )
    assert done.status.phase == "Promoted"
    assert done.status.stable_version == "2"


def test_target_change_mid_rollout_restarts_or_cancels() -> None:
    spec = make_spec([10, 50])
    d = decide(spec, promoted_on(V1), V2, Observed(exists=True, current=True), now=T0)
    restarted = decide(spec, d.status, V3, Observed(exists=True, current=True), now=T0)
    assert restarted.plan == Plan(V1, V3, 0)
    assert restarted.events[0].reason == "RolloutRestarted"
    cancelled = decide(spec, d.status, V1, Observed(exists=True, current=True), now=T0)
    assert cancelled.plan == Plan(V1)
    assert cancelled.status.phase == "Promoted"


def test_steady_state_is_a_fixed_point() -> None:
    spec = make_spec()
    ready = Observed(exists=True, current=True, stable_ready=True)
    first = decide(spec, promoted_on(V1), V1, ready, now=T0)
    second = decide(spec, first.status, V1, ready, now=T0 + timedelta(hours=1))
    assert second.status == first.status
    assert not second.events


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("1.5m", 90)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["", "10", "1d", "m", "1m x"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


# --------------------------------------------------------------------------- properties

steps_strategy = st.lists(st.integers(1, 100), min_size=1, max_size=8, unique=True).map(sorted)


@settings(max_examples=150, deadline=None)
@given(
    steps=steps_strategy,
    failure_limit=st.integers(1, 4),
    outcomes=st.lists(st.booleans(), max_size=30),
    ready_delay=st.integers(0, 4),
)
def test_property_steps_in_order_and_rollback_restores_stable(
    steps: list[int], failure_limit: int, outcomes: list[bool], ready_delay: int
) -> None:
    spec = make_spec(steps, failure_limit=failure_limit)
    world = FakeWorld(ready_delay=ready_delay, applied=Plan(V1), plan=Plan(V1))
    status, decisions = run(spec, promoted_on(V1), V2, world, list(outcomes))

    # Never skips or repeats a step: the weights KServe saw are a prefix of 0, steps...
    assert world.weights == [0, *steps][: len(world.weights)]
    # ... and monotone until the end of the rollout.
    assert world.weights == sorted(world.weights)
    committed = [d.status.canary_weight for d in decisions if d.status.canary_storage_uri]
    assert committed == sorted(committed)

    failures = world.analyses.count(False)
    assert reasons(decisions).count("AnalysisFailed") == failures
    if status.phase == "RolledBack":
        # Rolled back exactly when the limit was reached, to stable at 100%.
        assert failures == failure_limit
        assert not world.analyses[-1]
        assert world.plan == Plan(V1)
        assert status.stable_version == "1"
    else:
        assert status.phase == "Promoted"
        assert world.plan == Plan(V2)
        assert world.weights == [0, *steps]
        assert failures < failure_limit
        # Every step passed analysis exactly once.
        assert world.analyses.count(True) == len(steps)


@settings(max_examples=60, deadline=None)
@given(steps=steps_strategy, crash_at=st.lists(st.integers(0, 60), max_size=5))
def test_property_replaying_a_tick_after_a_crash_changes_nothing(
    steps: list[int], crash_at: list[int]
) -> None:
    """A crash after the status write but before the ISVC patch means the next reconcile
    sees the new status with the old ISVC; deciding again must re-issue the same plan."""
    spec = make_spec(steps)
    world = FakeWorld(applied=Plan(V1), plan=Plan(V1))
    status, now = promoted_on(V1), T0
    for tick in range(300):
        d = decide(spec, status, V2, world.observe(), now=now)
        if d.analysis_due:
            d = decide(spec, status, V2, world.observe(), now=now, analysis=result(True))
        status = d.status
        if tick in crash_at:
            # The ISVC patch was lost; the restarted operator decides from persisted status.
            replay = decide(spec, status, V2, world.observe(), now=now)
            assert replay.plan == d.plan
            assert [e.reason for e in replay.events] == []
        world.submit(d.plan)
        world.tick()
        now += timedelta(seconds=10)
        if status.phase == "Promoted" and world.applied == Plan(V2):
            break
    assert status.phase == "Promoted"
    assert world.weights == [0, *steps]
