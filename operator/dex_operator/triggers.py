"""A DexPipeline's drift triggers: one run per crossing of the threshold.

Each sync reads the named DexModel's drift share for the version it serves (its
``status.stableVersion``) from the DEX monitor, the same gauge its drift gate reads. A share
that goes from at-or-below to above the threshold is a crossing; it starts a run unless the
DexPipeline is suspended, one of its runs is still active, or the trigger's cooldown has not
passed since its last run (the crossing is then recorded with the reason it did not run). The
share falling back re-arms the trigger. The run is named
``<namespace>.<name>.drift-<dexModel>-<n>`` with ``n`` the trigger's next crossing count, and
looked up by that name before it is created: a status write lost after the run was made
cannot make a second one. Its description and an Event carry the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dex_operator.analysis import AnalysisError
from dex_operator.crd.models import DexPipelineSpec, DriftTrigger, TriggerStatus
from dex_operator.events import EventType
from dex_operator.kfp import Run
from dex_operator.rollout import parse_duration

# KFP v2 run states in which a run may still do work.
ACTIVE_STATES = frozenset({"", "PENDING", "RUNNING", "PAUSED", "CANCELING"})

ReadShare = Callable[[str], tuple[float | None, str]]  # DexModel name -> (share, why none)
StartRun = Callable[[str, str], Run]  # (run name, description) -> the run


@dataclass(frozen=True)
class Fired:
    event: tuple[EventType, str, str]


def run_name(key: str, trigger: DriftTrigger, crossing: int) -> str:
    return f"{key}.drift-{trigger.dex_model}-{crossing}"


def evaluate(
    spec: DexPipelineSpec,
    before: Sequence[TriggerStatus],
    *,
    key: str,
    runs: Sequence[Run],
    read_share: ReadShare,
    start_run: StartRun,
    now: datetime,
) -> tuple[list[TriggerStatus], list[tuple[EventType, str, str]]]:
    """The triggers' new state and the Events to post."""
    previous = {t.dex_model: t for t in before}
    active = [r for r in runs if r.state in ACTIVE_STATES]
    out: list[TriggerStatus] = []
    events: list[tuple[EventType, str, str]] = []
    for trigger in spec.triggers:
        state = previous.get(trigger.dex_model, TriggerStatus(dex_model=trigger.dex_model))
        state = state.model_copy()
        share, why = read_share(trigger.dex_model)
        state.drift_share = share
        if share is None:
            state.message = why
            out.append(state)
            continue
        above = share > trigger.threshold
        crossing = above and not state.above
        state.above = above
        if not crossing:
            if not above:
                state.message = f"drift share {share:.3f} <= {trigger.threshold}: armed"
            out.append(state)
            continue
        reason = (
            f"drift share {share:.3f} of DexModel {trigger.dex_model} crossed {trigger.threshold}"
        )
        name = run_name(key, trigger, state.crossings + 1)
        made = next((r for r in runs if r.display_name == name), None)
        # A run of this crossing already exists (the status that counted it was lost).
        blocked = None if made else _blocked(spec, trigger, state, active, now)
        if blocked:
            state.message = f"{reason}; no run: {blocked}"
            events.append(("Normal", "DriftTriggerSkipped", state.message))
            out.append(state)
            continue
        run = made or start_run(name, reason)
        state.crossings += 1
        state.last_triggered_at = now
        state.last_run_id = run.run_id
        state.message = f"{reason}: run {name}"
        events.append(("Normal", "DriftTriggered", f"{reason}: started run {name} ({run.run_id})"))
        out.append(state)
    return out, events


def _blocked(
    spec: DexPipelineSpec,
    trigger: DriftTrigger,
    state: TriggerStatus,
    active: Sequence[Run],
    now: datetime,
) -> str | None:
    if spec.suspend:
        return "the DexPipeline is suspended"
    if active:
        return f"run {active[0].display_name or active[0].run_id} is still {active[0].state or 'PENDING'}"
    if state.last_triggered_at is not None:
        ready_at = state.last_triggered_at + parse_duration(trigger.cooldown)
        if now < ready_at:
            return f"cooldown {trigger.cooldown} until {ready_at:%Y-%m-%dT%H:%M:%SZ}"
    return None


def share_reader(
    dexmodel: Callable[[str], Mapping[str, Any] | None],
    share: Callable[[str, str], float | None],
) -> ReadShare:
    """Reads a DexModel's served version, then its drift share; says why when it cannot."""

    def read(name: str) -> tuple[float | None, str]:
        obj = dexmodel(name)
        if obj is None:
            return None, f"DexModel {name} not found"
        version = (obj.get("status") or {}).get("stableVersion")
        if not version:
            return None, f"DexModel {name} serves no version yet"
        try:
            value = share(name, str(version))
        except AnalysisError as exc:
            return None, str(exc)
        if value is None:
            return None, f"no drift share for DexModel {name} version {version} yet"
        return value, ""

    return read
