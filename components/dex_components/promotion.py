"""Register + promote: the promotion gate.

A candidate is registered, scored on the same holdout as the current ``champion``, and
gets alias ``champion`` only when it passes the quality gates *and* beats the champion by
the configured margin; otherwise it becomes ``challenger``. The decision is made here, in
one step, because local KFP runs do not evaluate ``dsl.If`` reliably, and so that a
failure can undo its own registration: the registry never holds a half-made version.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import mlflow
import pandas as pd
from pydantic import BaseModel, Field

from dex.contract import FeatureContract
from dex.registry import CHALLENGER, CHAMPION, TAG_DECISION, TAG_REASONS
from dex.tasks import check_gate_metric, default_gate_metric
from dex_components.errors import StepError
from dex_components.evaluation import evaluate_model

log = logging.getLogger(__name__)

# The decision is the alias the new version gets.
Decision = Literal["champion", "challenger"]


class Gates(BaseModel):
    metric: str = Field(
        default="", description="Metric compared, higher is better; '' = the task's default."
    )
    min_value: float = Field(default=0.6, description="Quality gate on the holdout.")
    margin: float = Field(default=0.0, ge=0.0, description="Required lead over the champion.")
    max_drift_share: float = Field(default=1.0, ge=0.0, le=1.0)

    def for_task(self, task: str) -> Gates:
        """These gates with the metric named: the task's default when none was chosen."""
        metric = self.metric or default_gate_metric(task)
        problem = check_gate_metric(task, metric)  # type: ignore[arg-type]
        if problem is not None:
            raise StepError(problem.detail)
        return self.model_copy(update={"metric": metric})


class PromotionResult(BaseModel):
    registered_model: str
    version: str
    decision: Decision
    reasons: list[str]
    candidate: dict[str, float]
    champion_version: str | None
    champion: dict[str, float] | None

    def to_markdown(self) -> str:
        def fmt(values: dict[str, float] | None) -> str:
            return ", ".join(f"{k}={v:.4f}" for k, v in sorted((values or {}).items()))

        lines = [
            f"# Promotion decision: `{self.registered_model}` v{self.version} → **{self.decision}**",
            "",
            "| | version | metrics |",
            "| --- | --- | --- |",
            f"| candidate | {self.version} | {fmt(self.candidate)} |",
            f"| champion (before) | {self.champion_version or '—'} | {fmt(self.champion)} |",
            "",
            "Reasons:",
            *[f"- {r}" for r in self.reasons],
        ]
        return "\n".join(lines) + "\n"


def champion_of(client: mlflow.MlflowClient, name: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


def holdout_metrics(
    model_uri: str, holdout: pd.DataFrame, contract: FeatureContract
) -> dict[str, float]:
    missing = [c for c in contract.feature_columns if c not in holdout.columns]
    if missing:
        raise StepError(f"holdout lacks the model's feature columns {missing}")
    model = mlflow.sklearn.load_model(model_uri)
    return evaluate_model(model, holdout, contract).metrics


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    gates: Gates,
    drift_share: float | None,
) -> tuple[Decision, list[str]]:
    reasons: list[str] = []
    value = candidate.get(gates.metric, float("nan"))
    passed = not math.isnan(value) and value >= gates.min_value
    reasons.append(
        f"quality gate {gates.metric} >= {gates.min_value}: {value:.4f} "
        + ("passed" if passed else "FAILED")
    )
    if drift_share is not None:
        drift_ok = drift_share <= gates.max_drift_share
        passed = passed and drift_ok
        reasons.append(
            f"drift share <= {gates.max_drift_share}: {drift_share:.3f} "
            + ("passed" if drift_ok else "FAILED")
        )
    if not passed:
        return CHALLENGER, reasons
    if champion is None:
        reasons.append("no current champion")
        return CHAMPION, reasons
    incumbent = champion.get(gates.metric, float("nan"))
    if math.isnan(incumbent) or value >= incumbent + gates.margin:
        reasons.append(
            f"{gates.metric} {value:.4f} beats champion {incumbent:.4f} by >= {gates.margin}"
        )
        return CHAMPION, reasons
    reasons.append(
        f"{gates.metric} {value:.4f} does not beat champion {incumbent:.4f} by {gates.margin}"
    )
    return CHALLENGER, reasons


def logged_model_id(model_uri: str) -> str | None:
    """The id of an MLflow 3 logged model's URI (``models:/m-<id>``): a tracking server
    refuses such a version source without it (a local store does not check)."""
    return model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None


def register_and_promote(
    *,
    model_uri: str,
    run_id: str,
    registered_model: str,
    contract: FeatureContract,
    holdout: pd.DataFrame,
    gates: Gates,
    drift_share: float | None,
) -> PromotionResult:
    client = mlflow.MlflowClient()
    gates = gates.for_task(contract.task)
    candidate = holdout_metrics(model_uri, holdout, contract)
    incumbent = champion_of(client, registered_model)
    champion_metrics: dict[str, float] | None = None
    if incumbent is not None:
        champion_contract = FeatureContract.from_tags(incumbent.tags)
        champion_metrics = holdout_metrics(
            f"models:/{registered_model}/{incumbent.version}", holdout, champion_contract
        )
    decision, reasons = decide(candidate, champion_metrics, gates, drift_share)

    try:
        client.get_registered_model(registered_model)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(
            registered_model, description="Managed by DEX; aliases set by the promotion gate."
        )
    version = client.create_model_version(
        registered_model,
        source=model_uri,
        run_id=run_id,
        model_id=logged_model_id(model_uri),
        tags={
            **contract.to_tags(),
            TAG_DECISION: decision,
            **{f"dex.holdout.{k}": f"{v:.6f}" for k, v in candidate.items()},
        },
    )
    try:
        client.set_registered_model_alias(registered_model, decision, version.version)
        client.set_model_version_tag(
            registered_model, version.version, TAG_REASONS, "; ".join(reasons)
        )
    except Exception:
        # Leave no version without its alias and decision behind.
        client.delete_model_version(registered_model, version.version)
        raise
    log.info("registered %s v%s as %s", registered_model, version.version, decision)
    return PromotionResult(
        registered_model=registered_model,
        version=str(version.version),
        decision=decision,
        reasons=reasons,
        candidate=candidate,
        champion_version=str(incumbent.version) if incumbent is not None else None,
        champion=champion_metrics,
    )


def promote_challenger(
    *, registered_model: str, holdout: pd.DataFrame, gates: Gates
) -> PromotionResult:
    """Champion vs challenger on the same fresh holdout; move ``champion`` on a win."""
    client = mlflow.MlflowClient()
    try:
        challenger = client.get_model_version_by_alias(registered_model, CHALLENGER)
    except mlflow.exceptions.MlflowException as exc:
        raise StepError(
            f"registered model {registered_model!r} has no {CHALLENGER!r} alias"
        ) from exc
    incumbent = champion_of(client, registered_model)
    contract = FeatureContract.from_tags(challenger.tags)
    gates = gates.for_task(contract.task)
    candidate = holdout_metrics(
        f"models:/{registered_model}/{challenger.version}", holdout, contract
    )
    champion_metrics = None
    if incumbent is not None:
        champion_metrics = holdout_metrics(
            f"models:/{registered_model}/{incumbent.version}",
            holdout,
            FeatureContract.from_tags(incumbent.tags),
        )
    decision, reasons = decide(candidate, champion_metrics, gates, drift_share=None)
    if decision == CHAMPION:
        client.set_registered_model_alias(registered_model, CHAMPION, challenger.version)
        client.delete_registered_model_alias(registered_model, CHALLENGER)
    client.set_model_version_tag(registered_model, challenger.version, TAG_DECISION, decision)
    return PromotionResult(
        registered_model=registered_model,
        version=str(challenger.version),
        decision=decision,
        reasons=reasons,
        candidate=candidate,
        champion_version=str(incumbent.version) if incumbent is not None else None,
        champion=champion_metrics,
    )
