"""The MLflow registry as DEX uses it: where a model comes from (:class:`ModelRef`), pinning it
to one version with its feature contract (:func:`resolve`), the aliases the promotion gate
moves, and pointing MLflow at DEX's stores. The one owner of model resolution for the CLI,
the pipeline steps and the servers (the operator, which must not install MLflow, asks the
same registry over REST in ``dex_operator.registry``).

``models:/name@alias`` is resolved to a concrete version once: a server then serves one
immutable version even if the alias moves while it runs (the operator rolls a new version
out explicitly).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, Field

from dex.contract import TAG_FEATURE_SERVICE, FeatureContract
from dex.metrics import version_label
from dex.settings import DexSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient

# The aliases the promotion gate moves (the served model, and one that lost the gate), and
# the version tags recording its decision and why.
CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
TAG_DECISION: Final = "dex.decision"
TAG_REASONS: Final = "dex.reasons"

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w.-]+))$")


class ModelNotFoundError(LookupError):
    """The registry has no such model, version or alias."""


class ModelRef(BaseModel):
    """Where a model comes from: a registered name with a version or alias, or a plain URI."""

    name: str | None = None
    version: str | None = None
    alias: str | None = None
    uri: str | None = Field(default=None, description="Storage URI when not in the registry.")

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        match = _MODELS_URI.match(text)
        if match:
            return cls(name=match["name"], version=match["version"], alias=match["alias"])
        return cls(uri=text)

    @classmethod
    def registered(cls, name: str, version_or_alias: str) -> ModelRef:
        """``name`` at a version number ("3") or an alias ("champion")."""
        if version_or_alias.isdigit():
            return cls(name=name, version=version_or_alias)
        return cls(name=name, alias=version_or_alias)

    def describe(self) -> str:
        if self.name:
            return f"models:/{self.name}" + (
                f"/{self.version}" if self.version else f"@{self.alias}"
            )
        return str(self.uri)


class ResolvedModel(BaseModel):
    name: str
    version: str | None
    uri: str
    run_id: str | None
    contract: FeatureContract | None


def configure_mlflow(tracking_uri: str | None, registry_uri: str | None = None) -> None:
    """Point MLflow at these stores (unset: MLflow's own defaults and variables).

    Exported as MLflow's own variables so child processes (KFP tasks, servers) inherit them.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    if registry_uri:
        os.environ["MLFLOW_REGISTRY_URI"] = registry_uri
    # A URI set earlier in this process with mlflow.set_tracking_uri outranks the variables.
    if "mlflow" in sys.modules:
        import mlflow

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        if registry_uri:
            mlflow.set_registry_uri(registry_uri)


def use_settings(settings: DexSettings) -> None:
    """MLflow on ``settings``' stores: DEX_MLFLOW_TRACKING_URI / MLFLOW_TRACKING_URI, else
    SQLite in the state folder."""
    if settings.mlflow_tracking_uri is None:
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    configure_mlflow(settings.tracking_uri, settings.registry_uri)


def resolve(ref: ModelRef, served_name: str | None = None) -> ResolvedModel:
    """Pin a reference to one model version and read its feature contract from the tags.

    Raises :class:`ModelNotFoundError` naming what is missing.
    """
    if not ref.name:
        if not ref.uri:
            raise ValueError("a model reference needs a registered name or a URI")
        # No registry version: the URI's digest labels what it serves (dex.metrics).
        return ResolvedModel(
            name=served_name or "model",
            version=version_label(None, ref.uri),
            uri=ref.uri,
            run_id=None,
            contract=None,
        )
    if not (ref.version or ref.alias):
        raise ValueError(f"model {ref.name}: give a version or an alias")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        if ref.version:
            mv = client.get_model_version(ref.name, ref.version)
        else:
            mv = client.get_model_version_by_alias(ref.name, str(ref.alias))
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"registered model {ref.name!r} has no {'version' if ref.version else 'alias'} "
            f"{ref.version or ref.alias!r}"
        ) from exc
    tags = dict(mv.tags or {})
    contract = FeatureContract.from_tags(tags) if TAG_FEATURE_SERVICE in tags else None
    return ResolvedModel(
        name=ref.name,
        version=str(mv.version),
        uri=f"models:/{ref.name}/{mv.version}",
        run_id=mv.run_id,
        contract=contract,
    )


def download_reference(model: ResolvedModel, dst: Path) -> Path:
    """Fetch the training reference frame named by the contract (the drift baseline)."""
    import mlflow

    if model.contract is None or not model.contract.reference_data:
        raise ValueError(
            f"model {model.name} version {model.version} records no reference data "
            "(tag dex.reference_data)"
        )
    if model.run_id is None:
        raise ValueError(f"model {model.name} has no training run to read reference data from")
    dst.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        run_id=model.run_id, artifact_path=model.contract.reference_data, dst_path=str(dst)
    )
    return Path(local)


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
