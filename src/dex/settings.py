"""Configuration, read from ``DEX_*`` environment variables.

Every local artefact (MLflow DB and artifacts, Feast stores, the KFP pipeline root,
generated data) lives under one state folder so a user can delete it and start over.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DexSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEX_", extra="ignore", populate_by_name=True)

    state_dir: Path = Field(default=Path(".dex"), description="Folder for all local state.")
    feature_repo: Path = Field(
        # Relative to where dexctl runs, as Feast's own CLI takes its repo path.
        default=Path("feature_repo"),
        description="Feast repository (feature_store.yaml).",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DEX_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI; defaults to SQLite in the state folder.",
    )
    feast_registry: str | None = Field(
        default=None, description="Feast registry path/URI; defaults to the state folder."
    )
    feast_online_db: str | None = Field(
        default=None, description="Feast SQLite online store path; defaults to the state folder."
    )
    mlflow_registry_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DEX_MLFLOW_REGISTRY_URI", "MLFLOW_REGISTRY_URI"),
        description="MLflow registry URI; defaults to the tracking URI.",
    )
    experiment: str = Field(default="dex-churn", description="MLflow experiment name.")
    registered_model: str = Field(default="churn-classifier", description="Registered model.")
    feature_service: str = Field(default="churn_v1", description="Feast feature service.")

    @cached_property
    def state(self) -> Path:
        path = self.state_dir.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def data_dir(self) -> Path:
        return self.state / "data"

    @property
    def pipeline_root(self) -> Path:
        return self.state / "pipeline_root"

    @property
    def mlflow_dir(self) -> Path:
        return self.state / "mlflow"

    @property
    def feast_dir(self) -> Path:
        return self.state / "feast"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        return self.mlflow_registry_uri or self.tracking_uri

    @property
    def artifact_root(self) -> Path:
        return self.mlflow_dir / "artifacts"


def get_settings() -> DexSettings:
    return DexSettings()
