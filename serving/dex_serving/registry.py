"""Find a model in the MLflow registry: its version, artifact URI and feature contract.

``models:/name@alias`` is resolved to a concrete version once, at start-up, so the process
serves one immutable version even if the alias moves while it runs (the operator rolls a new
version out explicitly).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field

from dex.contract import FeatureContract

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w.-]+))$")


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


def configure_mlflow(tracking_uri: str | None, registry_uri: str | None) -> None:
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if registry_uri:
        mlflow.set_registry_uri(registry_uri)


def resolve(ref: ModelRef, served_name: str | None = None) -> ResolvedModel:
    """Pin a reference to one model version and read its feature contract from the tags."""
    if not ref.name:
        if not ref.uri:
            raise ValueError("a model reference needs a registered name or a URI")
        return ResolvedModel(
            name=served_name or "model", version=None, uri=ref.uri, run_id=None, contract=None
        )
    from mlflow import MlflowClient

    client = MlflowClient()
    if ref.version:
        mv = client.get_model_version(ref.name, ref.version)
    elif ref.alias:
        mv = client.get_model_version_by_alias(ref.name, ref.alias)
    else:
        raise ValueError(f"model {ref.name}: give a version or an alias")
    tags = dict(mv.tags or {})
    contract = FeatureContract.from_tags(tags) if "dex.feature_service" in tags else None
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
