"""MLflow registry access shared by the CLI, the components and the servers."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from dex.settings import DexSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"


def configure_mlflow(settings: DexSettings) -> None:
    """Point MLflow at ``settings``: DEX_MLFLOW_TRACKING_URI / MLFLOW_TRACKING_URI, else
    SQLite in the state folder.

    Exported as MLflow's own variables so KFP task subprocesses inherit the same stores.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if settings.mlflow_tracking_uri is None:
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    os.environ["MLFLOW_REGISTRY_URI"] = settings.registry_uri
    # A URI set earlier in this process with mlflow.set_tracking_uri outranks the variables.
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.registry_uri)


def ensure_experiment(name: str, artifact_root: str | None = None) -> str:
    """Experiment id by name, created with an explicit artifact root on first use."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_root))


class VersionSummary(BaseModel):
    name: str
    version: str
    aliases: list[str]
    run_id: str | None
    created: int
    status: str
    metrics: dict[str, float]
    tags: dict[str, str]


def list_versions(client: MlflowClient, name: str | None = None) -> list[VersionSummary]:
    """Every registered version (of one model, or all), newest first, with its aliases."""
    names = [name] if name else [m.name for m in client.search_registered_models()]
    out: list[VersionSummary] = []
    for model_name in names:
        aliases_by_version: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(model_name).aliases.items():
            aliases_by_version.setdefault(str(version), []).append(alias)
        for mv in client.search_model_versions(f"name='{model_name}'"):
            metrics = _run_metrics(client, mv.run_id)
            out.append(
                VersionSummary(
                    name=model_name,
                    version=str(mv.version),
                    aliases=sorted(aliases_by_version.get(str(mv.version), [])),
                    run_id=mv.run_id,
                    created=int(mv.creation_timestamp or 0),
                    status=str(mv.status),
                    metrics=metrics,
                    tags=dict(mv.tags or {}),
                )
            )
    out.sort(key=lambda v: (v.name, -int(v.version)))
    return out


def _run_metrics(client: Any, run_id: str | None) -> dict[str, float]:
    if not run_id:
        return {}
    try:
        return {k: float(v) for k, v in client.get_run(run_id).data.metrics.items()}
    except Exception:  # a deleted run must not hide the version from the listing
        return {}
