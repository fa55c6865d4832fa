"""DexPipeline → Kubeflow Pipelines, level-based: every reconcile computes the whole wanted
state from the spec and KFP's answers, so a retry, a restart or a missed event costs nothing.

1. The spec is checked before anything reaches KFP (``pipelines``): the package loads, every
   parameter is an input of it and typed as it declares, every required input is set, the
   schedule translates. A spec that fails is ``Ready=False`` and ``Degraded=True``
   (``InvalidSpec``) with an Event naming the field; nothing is sent to KFP.
2. The package is a pipeline version named by its content hash (``kfp.ensure_version``),
   uploaded once; the experiment ``spec.kfp.experiment`` is made if missing.
3. ``schedule`` is one KFP recurring run, named ``<namespace>.<name>`` in the experiment; its
   description carries a digest of what it runs (version, cron, parameters), and a different
   digest replaces it (KFP cannot edit a recurring run). ``suspend`` disables it. No schedule:
   none exists.
4. ``status`` mirrors KFP: the version, the recurring run, the last and recent runs of this
   DexPipeline (its recurring run's, and runs named ``<namespace>.<name>.<key>``), each with
   a link to its page in the KFP UI; ``Ready``/``Degraded`` conditions.

KFP unreachable or failing (5xx) is ``Degraded=True`` with an Event on the transition and a
retry with backoff (kopf's handler retries and the periodic sync); nothing is created twice
when it returns, since every create is looked up by its key first. A request KFP refuses
(4xx) is ``Degraded=True`` (``KfpRejected``) quoting KFP; only the periodic sync tries again.

5. Drift triggers (``triggers``): one run per crossing of a DexModel's drift share over the
   threshold, with a cooldown, none while a run is active; ``status.triggers`` and Events say
   what each crossing did. ``TriggersActive=False`` when a share cannot be read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from dex_operator import events, informer, kube, pipelines, triggers
from dex_operator.analysis import DexDriftProvider
from dex_operator.config import CONFIG
from dex_operator.crd.models import DexPipelineSpec, DexPipelineStatus, PipelineRun
from dex_operator.events import EventType
from dex_operator.kfp import (
    KfpClient,
    KfpError,
    KfpUnreachableError,
    RecurringRun,
    Run,
    VersionRef,
)
from dex_operator.rollout import set_condition

log = logging.getLogger("dex_operator.pipelines")

RECENT_RUNS = 10
# Retries of an unreachable KFP: 5 s doubling to 5 min.
BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 300.0


@dataclass(frozen=True)
class Outcome:
    """What a reconcile leaves: the status to write, an Event to post, a retry delay."""

    status: DexPipelineStatus
    events: list[tuple[EventType, str, str]]  # (type, reason, message)
    retry_after: float | None


def run_key(namespace: str, name: str) -> str:
    """The display name of this DexPipeline's recurring run, prefix of its own runs' names."""
    return f"{namespace}.{name}"


def schedule_digest(version_id: str, cron: str, parameters: Mapping[str, Any]) -> str:
    blob = json.dumps({"v": version_id, "c": cron, "p": parameters}, sort_keys=True)
    return "dex-schedule:" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def backoff(retry: int) -> float:
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, retry)))


def _link(run_id: str) -> str | None:
    base = CONFIG.kfp_ui_url.rstrip("/")
    return f"{base}/#/runs/details/{run_id}" if base else None


def _as_status_run(run: Run) -> PipelineRun:
    return PipelineRun(
        id=run.run_id,
        state=run.state or "PENDING",
        started_at=run.scheduled_at or run.created_at,
        finished_at=run.finished_at if run.finished_at and run.finished_at.year > 1970 else None,
        link=_link(run.run_id),
    )


def _previous(body: Mapping[str, Any]) -> DexPipelineStatus:
    raw = dict(body.get("status") or {})
    raw.pop("kopf", None)
    try:
        return DexPipelineStatus.model_validate(raw)
    except ValueError:
        return DexPipelineStatus()


def _flipped(before: DexPipelineStatus, after: DexPipelineStatus, kind: str) -> bool:
    def state(st: DexPipelineStatus) -> tuple[str, str] | None:
        found = next((c for c in st.conditions if c.type == kind), None)
        return (found.status, found.reason) if found else None

    return state(before) != state(after)


def _ensure_schedule(
    kfp: KfpClient,
    spec: DexPipelineSpec,
    key: str,
    experiment: str,
    version: VersionRef,
    parameters: dict[str, Any],
) -> RecurringRun | None:
    existing = kfp.find_recurring_run(experiment, key)
    if spec.schedule is None:
        if existing is not None:
            kfp.delete_recurring_run(existing.recurring_run_id)
        return None
    cron = pipelines.kfp_cron(spec.schedule)
    digest = schedule_digest(version.pipeline_version_id, cron, parameters)
    if existing is not None and existing.description != digest:
        kfp.delete_recurring_run(existing.recurring_run_id)
        existing = None
    if existing is None:
        return kfp.create_recurring_run(
            experiment_id=experiment,
            version=version,
            display_name=key,
            description=digest,
            cron=cron,
            parameters=parameters,
            enabled=not spec.suspend,
        )
    if (existing.status == "ENABLED") == spec.suspend:
        kfp.set_recurring_run_enabled(existing.recurring_run_id, not spec.suspend)
        existing = existing.model_copy(update={"status": "DISABLED" if spec.suspend else "ENABLED"})
    return existing


def reconcile(body: Mapping[str, Any], retry: int = 0) -> Outcome:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    before = _previous(body)
    status = before.model_copy(deep=True)
    status.observed_generation = meta.get("generation")
    now = datetime.now(UTC)
    spec = DexPipelineSpec.model_validate(body.get("spec") or {})
    key = run_key(namespace, name)

    try:
        package = pipelines.with_env(
            pipelines.load_package(spec.pipeline, timeout=CONFIG.http_timeout), spec.env
        )
        pipeline = pipelines.pipeline_name(package)
        parameters = pipelines.typed_parameters(package, spec.parameters)
        if spec.schedule:
            pipelines.kfp_cron(spec.schedule)
    except pipelines.PipelineSpecError as exc:
        set_condition(status, "Ready", False, "InvalidSpec", str(exc), now)
        # Degraded too: what Argo CD's health (and kubectl wait) reads as "needs a fix".
        set_condition(status, "Degraded", True, "InvalidSpec", str(exc), now)
        flipped = _flipped(before, status, "Ready")
        return Outcome(status, [("Warning", "InvalidSpec", str(exc))] if flipped else [], None)

    endpoint = spec.kfp.endpoint or CONFIG.kfp_url
    fired: list[tuple[EventType, str, str]] = []
    try:
        with KfpClient(endpoint, timeout=CONFIG.http_timeout) as kfp:
            version = kfp.ensure_version(pipeline, package)
            experiment = kfp.ensure_experiment(spec.kfp.experiment)
            recurring = _ensure_schedule(kfp, spec, key, experiment, version, parameters)

            def own_runs() -> list[Run]:
                return [
                    r
                    for r in kfp.runs(experiment)
                    if (recurring is not None and r.recurring_run_id == recurring.recurring_run_id)
                    or r.display_name.startswith(key + ".")
                ][:RECENT_RUNS]

            def start_run(name: str, description: str) -> Run:
                run, _ = kfp.ensure_run(
                    experiment_id=experiment,
                    version=version,
                    display_name=name,
                    parameters=parameters,
                    description=description,
                )
                return run

            mine = own_runs()
            if spec.triggers:
                status.triggers, fired = triggers.evaluate(
                    spec,
                    before.triggers,
                    key=key,
                    runs=mine,
                    read_share=_share_reader(namespace),
                    start_run=start_run,
                    now=now,
                )
                if fired:
                    mine = own_runs()
            else:
                status.triggers = []
    except KfpError as exc:
        unreachable = isinstance(exc, KfpUnreachableError) or (exc.status or 0) >= 500
        reason = "KfpUnreachable" if unreachable else "KfpRejected"
        set_condition(status, "Degraded", True, reason, str(exc), now)
        set_condition(status, "Ready", False, reason, str(exc), now)
        flipped = _flipped(before, status, "Degraded")
        reports: list[tuple[EventType, str, str]] = [("Warning", reason, str(exc))]
        return Outcome(status, reports if flipped else [], backoff(retry) if unreachable else None)

    status.pipeline_version = version.name
    status.recurring_run_id = recurring.recurring_run_id if recurring else None
    status.recent_runs = [_as_status_run(r) for r in mine]
    status.last_run = status.recent_runs[0] if status.recent_runs else None
    set_condition(status, "Degraded", False, "KfpAvailable", f"KFP at {endpoint} answers", now)
    if recurring is not None:
        state = "suspended" if spec.suspend else f"on {spec.schedule}"
        message = f"{version.name} in experiment {spec.kfp.experiment}, {state}"
        set_condition(
            status, "Ready", True, "Suspended" if spec.suspend else "Scheduled", message, now
        )
    else:
        message = f"{version.name} uploaded to experiment {spec.kfp.experiment}; no schedule"
        set_condition(status, "Ready", True, "Uploaded", message, now)
    if spec.triggers:
        unread = [t for t in status.triggers if t.drift_share is None]
        if unread:
            why = "; ".join(t.message for t in unread)
            set_condition(status, "TriggersActive", False, "DriftUnavailable", why, now)
        else:
            watched = ", ".join(t.dex_model for t in status.triggers)
            set_condition(status, "TriggersActive", True, "Watching", f"drift of {watched}", now)
    else:
        status.conditions = [c for c in status.conditions if c.type != "TriggersActive"]
    reports = list(fired)
    if _flipped(before, status, "Ready") or _flipped(before, status, "Degraded"):
        ready = next(c for c in status.conditions if c.type == "Ready")
        reports.append(("Normal", ready.reason, ready.message))
    if _flipped(before, status, "TriggersActive"):
        cond = next((c for c in status.conditions if c.type == "TriggersActive"), None)
        if cond is not None and cond.status == "False":
            reports.append(("Warning", cond.reason, cond.message))
    return Outcome(status, reports, None)


def _share_reader(namespace: str) -> triggers.ReadShare:
    def dexmodel(name: str) -> dict[str, Any] | None:
        return informer.DEXMODELS.get(namespace, name) or kube.get_dexmodel(namespace, name)

    return triggers.share_reader(dexmodel, _drift().share)


@functools.cache
def _drift() -> DexDriftProvider:
    # One pooled client for the operator's life, as the drift gate's.
    return DexDriftProvider(CONFIG.monitor_url, timeout=CONFIG.http_timeout)


def cleanup(body: Mapping[str, Any]) -> None:
    """On deletion: the recurring run this DexPipeline made (its runs stay: they are history
    in KFP, as a deleted CronJob's finished Jobs are not KFP's to lose)."""
    meta = body["metadata"]
    spec = DexPipelineSpec.model_validate(body.get("spec") or {})
    with KfpClient(spec.kfp.endpoint or CONFIG.kfp_url, timeout=CONFIG.http_timeout) as kfp:
        experiment = kfp.ensure_experiment(spec.kfp.experiment)
        found = kfp.find_recurring_run(experiment, run_key(meta["namespace"], meta["name"]))
        if found is not None:
            kfp.delete_recurring_run(found.recurring_run_id)


def status_patch(status: DexPipelineStatus) -> dict[str, Any]:
    """A merge patch of the whole status: what is gone (no schedule, no runs) is nulled."""
    out = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    for key in ("pipelineVersion", "recurringRunId", "lastRun"):
        out.setdefault(key, None)
    return out


def post(body: kopf.Body, reports: list[tuple[EventType, str, str]]) -> None:
    for kind, reason, message in reports:
        events.post(body, kind, reason, message)
