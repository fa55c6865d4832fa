"""The canary rollout engine: one pure function, ``decide``.

    decide(spec, status, target, observed, analysis, action, now) -> Decision

It reads the DexModel's spec and *current status* (the only memory a rollout has), the model
version the spec resolves to (``target``), what the InferenceService currently reports
(``observed``), the analysis results when the caller ran them, a manual action, and the
time. It returns the traffic plan the InferenceService must show, the new status, and the
Events to emit. No I/O, no clock, no globals: a restart at any instant re-enters here with
the persisted status and continues exactly where it stopped.

The life of a rollout (strategy Canary), top to bottom as ``decide`` handles it:

1. Nothing serves yet: the target becomes stable at once; Ready -> phase Promoted.
2. The target differs from stable: it becomes the canary at weight 0 (deployed, no traffic).
3. Canary Ready at weight 0: commit weight ``steps[0]``.
4. Canary Ready and the InferenceService shows the committed weight: the hold starts.
5. Hold elapsed (``interval``): ask for analysis (``Decision.analysis_due``); the caller runs
   the gates and calls again with results.
6. All gates pass: next step, or after the last step promote (canary -> stable, phase
   Promoted). A gate fails: count it; at ``failureLimit`` roll back (stable 100%, phase
   RolledBack, condition Degraded), else hold again and re-analyse.

Progress deadline: the waits in steps 3 and 4 (and a first deployment's) are bounded by
``progressDeadline``, counted from ``status.waitingSince``; past it a canary rolls back (or
stops in Failed without autoRollback) and a first deployment is marked Degraded, as Argo
Rollouts and Flagger do.

Manual gates: ``spec.rollout.paused`` freezes steps 3-6; the promote/abort annotation
promotes or rolls back the current canary at once. Status is written *before* the
InferenceService is patched (see ``controller``), so a step is never repeated or skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from dex_operator.crd.models import (
    AnalysisResult,
    Condition,
    DexModelSpec,
    DexModelStatus,
    DexPipelineStatus,
)

ManualAction = Literal["promote", "abort"]


@dataclass(frozen=True)
class Target:
    """A concrete model to serve: what the spec resolves to right now."""

    storage_uri: str
    version: str

    @property
    def key(self) -> str:
        return self.storage_uri


@dataclass(frozen=True)
class Observed:
    """What the InferenceService reports, reduced to what the engine needs.

    ``current`` is False until KServe has processed our latest spec (status.observedGeneration
    equals metadata.generation); nothing else is trusted before that.
    """

    exists: bool = False
    current: bool = False
    stable_ready: bool = False
    canary_ready: bool = False
    canary_traffic: int | None = None


@dataclass(frozen=True)
class Plan:
    """Desired InferenceService traffic: stable always, a canary at ``weight`` optionally."""

    stable: Target
    canary: Target | None = None
    weight: int = 0


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Decision:
    plan: Plan | None
    status: DexModelStatus
    events: list[Event] = field(default_factory=list)
    analysis_due: bool = False
    requeue_after: float | None = None


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Go-style duration (``1m30s``) as validated by the CRD pattern."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


def decide(
    spec: DexModelSpec,
    status: DexModelStatus,
    target: Target,
    observed: Observed,
    *,
    now: datetime,
    analysis: list[AnalysisResult] | None = None,
    action: ManualAction | None = None,
) -> Decision:
    st = status.model_copy(deep=True)
    events: list[Event] = []

    # 1. First deployment: nothing to protect, serve the target directly.
    if st.stable_storage_uri is None:
        st.stable_storage_uri, st.stable_version = target.storage_uri, target.version
        st.phase, st.waiting_since = "Pending", now
        events.append(Event("Normal", "Deploying", f"serving version {target.version}"))
    stable = Target(st.stable_storage_uri, st.stable_version or "")

    if st.canary_storage_uri is None:
        return _steady(spec, st, stable, target, observed, events, now)
    return _canary(spec, st, stable, target, observed, events, now, analysis, action)


def _steady(
    spec: DexModelSpec,
    st: DexModelStatus,
    stable: Target,
    target: Target,
    observed: Observed,
    events: list[Event],
    now: datetime,
) -> Decision:
    """No canary in flight: converge on stable, or start a rollout towards ``target``."""
    if target.key == stable.key or target.key == st.rolled_back_storage_uri:
        ready = observed.current and observed.stable_ready
        requeue = None
        if st.phase in ("Pending", "Progressing") and ready:
            st.phase = "Promoted"
            st.message = f"version {stable.version} serves 100%"
            st.waiting_since = None
            events.append(Event("Normal", "Promoted", st.message))
            if _is_degraded(st):
                set_condition(st, "Degraded", False, "Promoted", "", now)
        elif st.phase in ("Pending", "Progressing"):
            # Nothing older to fall back to: past the deadline the user is told, and the
            # wait goes on (the version may still come up).
            if st.waiting_since is None:
                st.waiting_since = now
            left = _deadline_left(spec, st, now)
            if left is not None and left <= 0 and not _is_degraded(st):
                message = (
                    f"version {stable.version} not Ready within "
                    f"{spec.rollout.progress_deadline} (spec.rollout.progressDeadline)"
                )
                events.append(Event("Warning", DEADLINE_REASON, message))
                set_condition(st, "Degraded", True, DEADLINE_REASON, message, now)
            requeue = left if left is not None and left > 0 else None
        _set_ready(st, ready, now)
        if st.phase == "Promoted":
            set_condition(st, "Progressing", False, "Idle", "no rollout in progress", now)
        return Decision(plan=Plan(stable), status=st, events=events, requeue_after=requeue)

    if spec.rollout.strategy == "Immediate":
        st.stable_storage_uri, st.stable_version = target.storage_uri, target.version
        st.phase, st.rolled_back_storage_uri = "Progressing", None
        st.waiting_since = now
        st.message = f"replacing with version {target.version} (Immediate)"
        events.append(Event("Normal", "RolloutStarted", st.message))
        set_condition(st, "Progressing", True, "Replacing", st.message, now)
        set_condition(st, "Degraded", False, "RolloutStarted", "", now)
        return Decision(
            plan=Plan(Target(target.storage_uri, target.version)), status=st, events=events
        )

    # 2. A new version: deploy it as a canary with no traffic yet.
    _start_canary(st, target, now)
    events.append(
        Event(
            "Normal",
            "RolloutStarted",
            f"canary version {target.version} deployed at 0%, stable {stable.version}",
        )
    )
    return Decision(plan=Plan(stable, target, 0), status=st, events=events)


def _start_canary(st: DexModelStatus, target: Target, now: datetime) -> None:
    st.canary_storage_uri, st.canary_version = target.storage_uri, target.version
    st.canary_weight, st.current_step, st.step_started_at = 0, 0, None
    st.waiting_since = now
    st.failed_checks, st.last_analysis, st.rolled_back_storage_uri = 0, [], None
    st.phase = "Progressing"
    st.message = f"waiting for canary version {target.version} to become Ready"
    set_condition(st, "Progressing", True, "CanaryDeploying", st.message, now)
    set_condition(st, "Degraded", False, "RolloutStarted", "", now)


def _canary(
    spec: DexModelSpec,
    st: DexModelStatus,
    stable: Target,
    target: Target,
    observed: Observed,
    events: list[Event],
    now: datetime,
    analysis: list[AnalysisResult] | None,
    action: ManualAction | None,
) -> Decision:
    rollout = spec.rollout
    canary = Target(st.canary_storage_uri or "", st.canary_version or "")
    _set_ready(st, observed.current and observed.stable_ready, now)

    # The source moved while a canary was in flight.
    if target.key != canary.key:
        if target.key == stable.key:
            _finish(st, now)
            st.phase, st.message = "Promoted", f"rollout cancelled, stable {stable.version}"
            events.append(Event("Normal", "RolloutCancelled", st.message))
            return Decision(plan=Plan(stable), status=st, events=events)
        _start_canary(st, target, now)
        events.append(
            Event("Normal", "RolloutRestarted", f"canary replaced by version {target.version}")
        )
        return Decision(plan=Plan(stable, target, 0), status=st, events=events)

    # Manual gate: the annotation acts once per canary.
    token = f"{action}@{canary.key}"
    if action is not None and st.last_action != token:
        st.last_action = token
        if action == "promote":
            return _promote(st, canary, events, now, "ManualPromote")
        return _rollback(
            st,
            stable,
            canary,
            events,
            now,
            "ManualAbort",
            f"rollout of version {canary.version} aborted by annotation",
        )

    if st.phase == "Failed":
        # autoRollback was off: the canary stays at its weight until a human decides.
        return Decision(plan=Plan(stable, canary, st.canary_weight), status=st, events=events)

    plan = Plan(stable, canary, st.canary_weight)
    if rollout.paused:
        # A pause is the user's time, not KServe's: the deadline starts afresh on resume.
        st.waiting_since = None
        set_condition(st, "Progressing", True, "Paused", "spec.rollout.paused is true", now)
        return Decision(plan=plan, status=st, events=events)

    canary_up = observed.current and observed.canary_ready
    step = st.current_step or 0
    step_weight = rollout.steps[min(step, len(rollout.steps) - 1)]

    # 3. Canary Ready and routed with no traffic yet (the route, or KServe, names it at the
    #    committed weight: deployed before it is weighted): commit the step's weight.
    if st.canary_weight < step_weight:
        if not canary_up or observed.canary_traffic != st.canary_weight:
            what = f"be routed at {st.canary_weight}%" if canary_up else "become Ready"
            return _wait(spec, st, stable, canary, plan, events, now, what)
        return _enter_step(st, stable, canary, step, step_weight, events, now)

    # 4. The hold starts once KServe shows the committed weight on a Ready canary.
    if st.step_started_at is None:
        if canary_up and observed.canary_traffic == st.canary_weight:
            st.step_started_at, st.waiting_since = now, None
            st.message = f"holding step {step + 1}/{len(rollout.steps)} at {st.canary_weight}%"
            set_condition(st, "Progressing", True, "StepHolding", st.message, now)
            return Decision(plan=plan, status=st, events=events)
        what = f"serve {st.canary_weight}% Ready" if canary_up else "become Ready"
        return _wait(spec, st, stable, canary, plan, events, now, what)

    # 5. Hold for `interval`, then analysis.
    hold_end = st.step_started_at + parse_duration(rollout.interval)
    if now < hold_end:
        return Decision(
            plan=plan, status=st, events=events, requeue_after=(hold_end - now).total_seconds()
        )
    if analysis is None and rollout.analysis:
        return Decision(plan=plan, status=st, events=events, analysis_due=True)

    # 6. Judge the step.
    results = analysis or []
    st.last_analysis = results
    failed = [r for r in results if not r.passed]
    if not failed:
        if step + 1 >= len(rollout.steps):
            return _promote(st, canary, events, now, "AnalysisPassed")
        events.append(
            Event("Normal", "StepPassed", f"step {step + 1} at {st.canary_weight}% passed analysis")
        )
        return _enter_step(st, stable, canary, step + 1, rollout.steps[step + 1], events, now)

    st.failed_checks += 1
    worst = failed[0]
    detail = (
        f"{worst.name} ({worst.metric}) = {_fmt(worst.value)}, threshold "
        f"{worst.threshold:g}{': ' + worst.message if worst.message else ''}"
    )
    events.append(
        Event(
            "Warning",
            "AnalysisFailed",
            f"step {step + 1} at {st.canary_weight}%: {detail} "
            f"(failure {st.failed_checks}/{rollout.failure_limit})",
        )
    )
    if st.failed_checks < rollout.failure_limit:
        st.step_started_at = now  # hold again, then re-analyse the same step
        return Decision(plan=plan, status=st, events=events)
    if not rollout.auto_rollback:
        st.phase = "Failed"
        st.message = f"analysis failed {st.failed_checks} times: {detail}; awaiting abort/promote"
        set_condition(st, "Degraded", True, "AnalysisFailed", st.message, now)
        set_condition(st, "Progressing", False, "AnalysisFailed", st.message, now)
        return Decision(plan=plan, status=st, events=events)
    return _rollback(
        st,
        stable,
        canary,
        events,
        now,
        "AnalysisFailed",
        f"version {canary.version} rolled back: {detail}",
    )


DEADLINE_REASON = "ProgressDeadlineExceeded"


def _deadline_left(spec: DexModelSpec, st: DexModelStatus, now: datetime) -> float | None:
    """Seconds until the progress deadline (<= 0: passed); None when nothing is waited on."""
    if st.waiting_since is None:
        return None
    deadline = st.waiting_since + parse_duration(spec.rollout.progress_deadline)
    return (deadline - now).total_seconds()


def _is_degraded(st: DexModelStatus) -> bool:
    return any(c.type == "Degraded" and c.status == "True" for c in st.conditions)


def _wait(
    spec: DexModelSpec,
    st: DexModelStatus,
    stable: Target,
    canary: Target,
    plan: Plan,
    events: list[Event],
    now: datetime,
    what: str,
) -> Decision:
    """Steps 3-4 wait on KServe; past ``progressDeadline`` the canary is given up."""
    if st.waiting_since is None:  # after a pause, or a status from before the deadline existed
        st.waiting_since = now
    left = _deadline_left(spec, st, now)
    assert left is not None
    if left > 0:
        return Decision(plan=plan, status=st, events=events, requeue_after=left)
    detail = (
        f"canary version {canary.version} did not {what} within "
        f"{spec.rollout.progress_deadline} (spec.rollout.progressDeadline)"
    )
    if not spec.rollout.auto_rollback:
        st.phase, st.message = "Failed", f"{detail}; awaiting abort/promote"
        events.append(Event("Warning", DEADLINE_REASON, st.message))
        set_condition(st, "Degraded", True, DEADLINE_REASON, st.message, now)
        set_condition(st, "Progressing", False, DEADLINE_REASON, st.message, now)
        return Decision(plan=plan, status=st, events=events)
    return _rollback(st, stable, canary, events, now, DEADLINE_REASON, detail)


def _enter_step(
    st: DexModelStatus,
    stable: Target,
    canary: Target,
    step: int,
    weight: int,
    events: list[Event],
    now: datetime,
) -> Decision:
    st.current_step, st.canary_weight, st.step_started_at = step, weight, None
    st.waiting_since = now
    st.message = f"step {step + 1}: canary version {canary.version} at {weight}%"
    events.append(Event("Normal", "StepStarted", st.message))
    set_condition(st, "Progressing", True, "StepStarted", st.message, now)
    return Decision(plan=Plan(stable, canary, weight), status=st, events=events)


def _promote(
    st: DexModelStatus, canary: Target, events: list[Event], now: datetime, reason: str
) -> Decision:
    st.stable_storage_uri, st.stable_version = canary.storage_uri, canary.version
    _finish(st, now)
    st.phase = "Promoted"
    st.message = f"version {canary.version} promoted to 100%"
    events.append(Event("Normal", "Promoted", f"{st.message} ({reason})"))
    set_condition(st, "Progressing", False, reason, st.message, now)
    set_condition(st, "Degraded", False, reason, "", now)
    return Decision(plan=Plan(canary), status=st, events=events)


def _rollback(
    st: DexModelStatus,
    stable: Target,
    canary: Target,
    events: list[Event],
    now: datetime,
    reason: str,
    message: str,
) -> Decision:
    _finish(st, now)
    st.rolled_back_storage_uri = canary.key
    st.phase, st.message = "RolledBack", f"{message}; stable {stable.version} serves 100%"
    events.append(Event("Warning", "RolledBack", st.message))
    set_condition(st, "Degraded", True, reason, st.message, now)
    set_condition(st, "Progressing", False, reason, st.message, now)
    return Decision(plan=Plan(stable), status=st, events=events)


def _finish(st: DexModelStatus, now: datetime) -> None:
    st.canary_storage_uri = st.canary_version = None
    st.canary_weight, st.current_step, st.step_started_at, st.failed_checks = 0, None, None, 0
    st.waiting_since = None


def _fmt(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"


def _set_ready(st: DexModelStatus, ready: bool, now: datetime) -> None:
    set_condition(
        st,
        "Ready",
        ready,
        "InferenceServiceReady" if ready else "InferenceServiceNotReady",
        "stable revision serves traffic" if ready else "waiting for the InferenceService",
        now,
    )


def set_condition(
    st: DexModelStatus | DexPipelineStatus,
    kind: str,
    value: bool,
    reason: str,
    message: str,
    now: datetime,
) -> None:
    """Upsert a condition; lastTransitionTime moves only when the status flips."""
    status: Literal["True", "False"] = "True" if value else "False"
    for cond in st.conditions:
        if cond.type == kind:
            if cond.status != status:
                cond.last_transition_time = now
            cond.status, cond.reason, cond.message = status, reason, message
            cond.observed_generation = st.observed_generation
            return
    st.conditions.append(
        Condition(
            type=kind,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=now,
            observed_generation=st.observed_generation,
        )
    )
