"""Configuration: the project file ``dex.yaml``, overridden by ``DEX_*`` environment variables.

A user describes their data set once in ``dex.yaml`` (entity source, entity key and its
type, timestamp, label, task, feature service, registered model, gates); it is found as
Feast finds ``feature_store.yaml``: in the directory dexctl runs in, or where
``DEX_PROJECT_FILE`` points. Relative paths in it are relative to the file. Without a file,
the defaults are the churn demo's. Every local artefact (MLflow DB and artifacts, Feast
stores, the KFP pipeline root, generated data) lives under one state folder so a user can
delete it and start over.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from dex.contract import TaskSetting

PROJECT_FILE = "dex.yaml"
PROJECT_FILE_VARIABLE = "DEX_PROJECT_FILE"
# Keys of dex.yaml that are paths: relative to the file, as Feast's are to its repo.
_PATH_KEYS = ("state_dir", "feature_repo", "data_dir", "entity_source")


class GateSettings(BaseModel):
    """The promotion gate: a version is champion only if it passes these."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(default="", description="Holdout metric; '' = the task's default.")
    min_value: float = Field(default=0.65, description="Quality gate on the holdout.")
    margin: float = Field(default=0.0, ge=0.0, description="Required lead over the champion.")
    max_drift_share: float = Field(default=1.0, ge=0.0, le=1.0)


class ProjectFileError(ValueError):
    """dex.yaml cannot be read; the message names the file and the key."""


def project_file() -> Path | None:
    """The project file in force: ``$DEX_PROJECT_FILE``, else ``./dex.yaml`` if present."""
    named = os.environ.get(PROJECT_FILE_VARIABLE)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ProjectFileError(f"{PROJECT_FILE_VARIABLE}={named}: no such file")
        return path.resolve()
    here = Path.cwd() / PROJECT_FILE
    return here.resolve() if here.is_file() else None


def read_project_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProjectFileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ProjectFileError(f"{path}: expected a mapping of settings")
    known = {*DexSettings.model_fields, "data_dir"} - {"data_dir_override", "project_path"}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ProjectFileError(f"{path}: unknown keys {unknown}; known keys are {sorted(known)}")
    for key in _PATH_KEYS:
        value = data.get(key)
        if isinstance(value, str) and "://" not in value:
            data[key] = str((path.parent / value).expanduser().resolve())
    return data


class _ProjectFileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = project_file()
        self.data = read_project_file(path) if path else {}
        if path:
            self.data.setdefault("project_path", str(path))

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


class DexSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DEX_", extra="ignore", populate_by_name=True, env_nested_delimiter="__"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables win over dex.yaml, which wins over the defaults.
        return (init_settings, env_settings, _ProjectFileSource(settings_cls))

    project_path: Path | None = Field(
        default=None, description="The dex.yaml these settings were read from, if any."
    )

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
    data_dir_override: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DEX_DATA_DIR", "data_dir"),
        description="Folder (or object-store URI, e.g. s3://bucket/prefix) of the data files "
        "Feast sources read; defaults to the state's.",
    )
    entity_source: str | None = Field(
        default=None,
        description="Labelled entity rows (Parquet/CSV): key, timestamp, label. "
        "Defaults to the churn demo's labels in the data folder.",
    )
    entity_key: str = Field(default="customer_id", description="Entity join key column.")
    entity_key_type: Literal["auto", "int", "str"] = Field(
        default="auto", description="Type of the entity key's values (auto: from the data)."
    )
    timestamp_column: str = Field(default="event_timestamp", description="Event time column.")
    label: str = Field(default="churned", description="Label column.")
    task: TaskSetting = Field(default="auto", description="auto (from the label) or a task.")
    categorical_features: list[str] = Field(
        default_factory=list,
        description="Numeric features to treat as categories (text features always are).",
    )
    label_values: list[int | str] | None = Field(
        default=None, description="Allowed label values (none: any)."
    )
    gates: GateSettings = Field(default_factory=GateSettings)

    @cached_property
    def state(self) -> Path:
        path = self.state_dir.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def data_dir(self) -> Path:
        """The local data folder (what the data generator writes)."""
        if self.data_dir_override is not None:
            if _is_uri(self.data_dir_override):
                raise ValueError(
                    f"DEX_DATA_DIR={self.data_dir_override} is a URI: this command writes "
                    "local files, so it needs a folder"
                )
            return Path(self.data_dir_override).expanduser().resolve()
        return self.state / "data"

    @property
    def data_location(self) -> str:
        """Where Feast's sources read: the data folder, or the URI DEX_DATA_DIR names (a
        cluster's steps read their data from object storage)."""
        if self.data_dir_override is not None and _is_uri(self.data_dir_override):
            return self.data_dir_override.rstrip("/")
        return str(self.data_dir)

    @property
    def entity_source_uri(self) -> str:
        return self.entity_source or f"{self.data_location}/churn_labels.parquet"

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


def _is_uri(location: str) -> bool:
    return "://" in location


def get_settings() -> DexSettings:
    return DexSettings()
