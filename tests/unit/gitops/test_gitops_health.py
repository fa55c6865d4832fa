"""The Argo CD health checks (kustomize/argocd/health/*.lua), executed by a real Lua 5.1 in
Argo CD's sandbox, on DexModel statuses produced by the operator's own rollout engine
(``dex_operator.rollout.decide``) and on DexPipeline statuses built from its status model."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from gitopskit import REPO, Health, Manifest, run_health_lua
from lupa.lua51 import LuaError

from dex_operator.crd.models import (
    AnalysisResult,
    Condition,
    DexModelSpec,
    DexModelStatus,
    DexPipelineStatus,
    PipelineRun,
)
from dex_operator.rollout import Observed, Target, decide, set_condition

SAMPLES = REPO / "manifests" / "samples"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
V3 = Target("s3://models/churn-classifier/3", "3")
V4 = Target("s3://models/churn-classifier/4", "4")
UP = Observed(exists=True, current=True, stable_ready=True)

HealthOf = Callable[[str, Manifest], Health]


def sample(name: str) -> Manifest:
    loaded: Manifest = yaml.safe_load((SAMPLES / name).read_text())
    return loaded


@dataclass
class Model:
    """The canary sample DexModel, moved through a rollout by the real engine. ``obj()`` is
    the object as the API server serves it after the operator's status patch."""

    manifest: Manifest = field(default_factory=lambda: sample("dexmodel_canary.yaml"))
    generation: int = 1
    status: DexModelStatus | None = None
    now: datetime = T0

    @property
    def spec(self) -> DexModelSpec:
        return DexModelSpec.model_validate(self.manifest["spec"])

    def edit_spec(self, **rollout: Any) -> None:
        self.manifest["spec"]["rollout"].update(rollout)
        self.generation += 1

    def reconcile(
        self,
        target: Target,
        observed: Observed,
        *,
        wait: timedelta = timedelta(0),
        analysis: list[AnalysisResult] | None = None,
    ) -> DexModelStatus:
        self.now += wait
        status = (self.status or DexModelStatus()).model_copy(deep=True)
        status.observed_generation = self.generation  # as handlers._reconcile does
        self.status = decide(
            self.spec, status, target, observed, now=self.now, analysis=analysis
        ).status
        return self.status

    def obj(self) -> Manifest:
        obj = copy.deepcopy(self.manifest)
        obj["metadata"].update(generation=self.generation, uid="0c1d", resourceVersion="7")
        if self.status is not None:
            obj["status"] = self.status.model_dump(by_alias=True, mode="json")
        return obj


def promoted(model: Model) -> Model:
    model.reconcile(V3, Observed())
    assert model.reconcile(V3, UP).phase == "Promoted"
    return model


def canary_holding(model: Model) -> Model:
    """V3 serves; V4 runs as a canary at the first step's weight, its hold started."""
    promoted(model)
    model.reconcile(V4, UP)
    # The route names the canary at 0% before the first step's weight is committed.
    canary_up = Observed(
        exists=True, current=True, stable_ready=True, canary_ready=True, canary_traffic=0
    )
    model.reconcile(V4, canary_up)
    step = model.spec.rollout.steps[0]
    at_weight = Observed(
        exists=True, current=True, stable_ready=True, canary_ready=True, canary_traffic=step
    )
    status = model.reconcile(V4, at_weight)
    assert status.step_started_at is not None
    assert status.canary_weight == step
    return model


def fail_analysis_until_limit(model: Model) -> DexModelStatus:
    interval = timedelta(minutes=5)  # the sample's spec.rollout.interval
    assert model.spec.rollout.interval == "5m"
    observed = Observed(
        exists=True,
        current=True,
        stable_ready=True,
        canary_ready=True,
        canary_traffic=model.spec.rollout.steps[0],
    )
    bad = [
        AnalysisResult(name="errors", metric="errorRate", value=0.2, threshold=0.01, passed=False)
    ]
    status = model.status
    assert status is not None
    for _ in range(model.spec.rollout.failure_limit):
        status = model.reconcile(V4, observed, wait=interval, analysis=bad)
    return status


# ------------------------------------------------------------------------------- DexModel


def test_dexmodel_never_reconciled_is_progressing(health_of: HealthOf) -> None:
    health = health_of("dexmodel", Model().obj())
    assert health.status == "Progressing"
    assert "reconcile" in health.message


def test_dexmodel_first_deploy_pending_is_progressing(health_of: HealthOf) -> None:
    model = Model()
    assert model.reconcile(V3, Observed()).phase == "Pending"
    health = health_of("dexmodel", model.obj())
    assert health == Health(status="Progressing", message="waiting for the InferenceService")


def test_dexmodel_promoted_and_ready_is_healthy(health_of: HealthOf) -> None:
    model = promoted(Model())
    health = health_of("dexmodel", model.obj())
    assert health == Health(status="Healthy", message="version 3 serves 100%")


def test_dexmodel_promoted_but_not_ready_is_progressing(health_of: HealthOf) -> None:
    model = promoted(Model())
    status = model.reconcile(V3, Observed(exists=True, current=True, stable_ready=False))
    assert status.phase == "Promoted"
    health = health_of("dexmodel", model.obj())
    assert health == Health(status="Progressing", message="waiting for the InferenceService")


def test_dexmodel_unobserved_generation_is_progressing_even_when_promoted(
    health_of: HealthOf,
) -> None:
    model = promoted(Model())
    model.edit_spec(steps=[20, 60])  # the API server bumps generation; not reconciled yet
    health = health_of("dexmodel", model.obj())
    assert health == Health(
        status="Progressing", message="Waiting for the DEX operator to observe generation 2"
    )
    model.reconcile(V3, UP)
    assert health_of("dexmodel", model.obj()).status == "Healthy"


def test_dexmodel_canary_in_flight_is_progressing(health_of: HealthOf) -> None:
    model = canary_holding(Model())
    assert model.status is not None
    assert model.status.phase == "Progressing"
    health = health_of("dexmodel", model.obj())
    assert health == Health(status="Progressing", message="holding step 1/3 at 10%")


def test_dexmodel_paused_rollout_is_suspended(health_of: HealthOf) -> None:
    model = canary_holding(Model())
    model.edit_spec(paused=True)
    assert health_of("dexmodel", model.obj()).status == "Progressing"
    model.reconcile(V4, UP)
    health = health_of("dexmodel", model.obj())
    assert health == Health(
        status="Suspended",
        message="Rollout paused (spec.rollout.paused): canary version 4 at 10%",
    )


def test_dexmodel_rolled_back_is_degraded_with_the_reason(health_of: HealthOf) -> None:
    model = canary_holding(Model())
    status = fail_analysis_until_limit(model)
    assert status.phase == "RolledBack"
    health = health_of("dexmodel", model.obj())
    assert health.status == "Degraded"
    assert health.message.startswith("version 4 rolled back: errors (errorRate) = 0.2")
    assert health.message.endswith("stable 3 serves 100%")
    # A RolledBack model stays Degraded while paused: the failure outranks the manual gate.
    model.edit_spec(paused=True)
    model.reconcile(V4, UP)
    assert health_of("dexmodel", model.obj()).status == "Degraded"


def test_dexmodel_failed_without_auto_rollback_is_degraded(health_of: HealthOf) -> None:
    model = Model()
    model.manifest["spec"]["rollout"]["autoRollback"] = False
    canary_holding(model)
    status = fail_analysis_until_limit(model)
    assert status.phase == "Failed"
    health = health_of("dexmodel", model.obj())
    assert health.status == "Degraded"
    assert health.message.startswith("analysis failed 2 times: errors (errorRate)")
    assert health.message.endswith("awaiting abort/promote")


def test_dexmodel_degraded_condition_while_serving_is_degraded(health_of: HealthOf) -> None:
    # What handlers._report_source_error writes when the registry fails while stable serves.
    model = promoted(Model())
    assert model.status is not None
    set_condition(model.status, "Degraded", True, "RegistryError", "registry unreachable", T0)
    health = health_of("dexmodel", model.obj())
    assert health == Health(status="Degraded", message="registry unreachable")


def test_dexmodel_failed_phase_without_degraded_condition_uses_status_message(
    health_of: HealthOf,
) -> None:
    # A feature-service mismatch before anything serves: phase Failed, Ready False only.
    status = DexModelStatus(
        phase="Failed",
        observed_generation=1,
        message="version 3 was trained on feature service 'churn_v0'",
        conditions=[Condition(type="Ready", status="False", reason="FeatureServiceMismatch")],
    )
    model = Model(status=status)
    health = health_of("dexmodel", model.obj())
    assert health == Health(status="Degraded", message=status.message)


@pytest.mark.parametrize(
    "path",
    sorted(
        p for p in SAMPLES.glob("*.yaml") if p.name not in ("kustomization.yaml", "namespace.yaml")
    ),
    ids=lambda p: p.stem,
)
def test_every_sample_starts_progressing(path: Path, health_of: HealthOf) -> None:
    obj = yaml.safe_load(path.read_text())
    assert obj["kind"] in ("DexModel", "DexPipeline")
    obj["metadata"]["generation"] = 1
    assert health_of(obj["kind"].lower(), obj).status == "Progressing"


# ---------------------------------------------------------------------------- DexPipeline


def pipeline(
    status: DexPipelineStatus | None, *, generation: int = 1, suspend: bool = False
) -> Manifest:
    obj = sample("dexpipeline_retrain.yaml")
    obj["metadata"]["generation"] = generation
    obj["spec"]["suspend"] = suspend
    if status is not None:
        obj["status"] = status.model_dump(by_alias=True, mode="json")
    return obj


def run(state: str, link: str | None = None) -> DexPipelineStatus:
    return DexPipelineStatus(
        observed_generation=1,
        last_run=PipelineRun(id="run-7", state=state, started_at=T0, link=link),
        conditions=[Condition(type="Ready", status="True", reason="Scheduled")],
    )


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("SUCCEEDED", "Healthy"),
        ("SKIPPED", "Healthy"),
        ("PENDING", "Progressing"),
        ("RUNNING", "Progressing"),
        ("CANCELING", "Progressing"),
        ("PAUSED", "Suspended"),
        ("FAILED", "Degraded"),
        ("CANCELED", "Degraded"),
        ("Succeeded", "Healthy"),  # KFP v1 spelling
        ("Error", "Degraded"),
        ("SOMETHING_NEW", "Unknown"),
    ],
)
def test_dexpipeline_health_follows_the_last_run(
    state: str, expected: str, health_of: HealthOf
) -> None:
    health = health_of("dexpipeline", pipeline(run(state)))
    assert health == Health.model_validate(
        {"status": expected, "message": f"Last run run-7 {state}"}
    )


def test_dexpipeline_message_links_the_run(health_of: HealthOf) -> None:
    link = "http://kfp.example/#/runs/details/run-7"
    health = health_of("dexpipeline", pipeline(run("FAILED", link)))
    assert health == Health(status="Degraded", message=f"Last run run-7 FAILED ({link})")


def test_dexpipeline_not_yet_reconciled_is_progressing(health_of: HealthOf) -> None:
    assert health_of("dexpipeline", pipeline(None)).status == "Progressing"
    lagging = health_of("dexpipeline", pipeline(run("SUCCEEDED"), generation=2))
    assert lagging == Health(
        status="Progressing", message="Waiting for the DEX operator to observe generation 2"
    )


def test_dexpipeline_degraded_condition_wins(health_of: HealthOf) -> None:
    status = run("SUCCEEDED")
    status.conditions.append(
        Condition(type="Degraded", status="True", reason="KfpError", message="KFP unreachable")
    )
    health = health_of("dexpipeline", pipeline(status, suspend=True))
    assert health == Health(status="Degraded", message="KFP unreachable")


def test_dexpipeline_suspended(health_of: HealthOf) -> None:
    health = health_of("dexpipeline", pipeline(run("SUCCEEDED"), suspend=True))
    assert health.status == "Suspended"


def test_dexpipeline_without_runs_follows_ready(health_of: HealthOf) -> None:
    ready = DexPipelineStatus(
        observed_generation=1, conditions=[Condition(type="Ready", status="True", reason="OK")]
    )
    assert health_of("dexpipeline", pipeline(ready)).status == "Healthy"
    waiting = DexPipelineStatus(
        observed_generation=1,
        conditions=[
            Condition(type="Ready", status="False", reason="NoKfp", message="no KFP endpoint")
        ],
    )
    assert health_of("dexpipeline", pipeline(waiting)) == Health(
        status="Progressing", message="no KFP endpoint"
    )


# ------------------------------------------------------------------------------- sandbox


@pytest.mark.parametrize(
    "script",
    [
        'return {status = string.format("%s", "Healthy")}',
        'return {status = ("healthy"):upper()}',
        "return {status = tostring(math.floor(1))}",
        'return {status = io.read("*a")}',
    ],
)
def test_runner_has_argo_cds_sandbox(script: str) -> None:
    # Argo CD opens no string/math/io library for argocd-cm scripts: if these worked here,
    # a health check relying on them would pass the tests and fail in Argo CD.
    with pytest.raises(LuaError):
        run_health_lua(script, {"metadata": {}})


def test_runner_rejects_an_invalid_status() -> None:
    with pytest.raises(ValueError, match="status"):
        run_health_lua('return {status = "Fine"}', {"metadata": {}})
