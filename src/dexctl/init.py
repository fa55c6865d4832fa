"""``dexctl init``: a DEX project from a user's Parquet or CSV file.

Writes ``dex.yaml`` (the project description every dexctl command reads) and a Feast repo
whose one feature view serves every column of the file that is not the key, the timestamp
or the label. Column types are read from the file, so text columns become String features
(categorical in the model) and a text key a STRING entity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import BaseModel, Field
from rich.console import Console

from dex.contract import TaskSetting
from dex.settings import PROJECT_FILE
from dex.tasks import resolve_task

console = Console()

FEATURE_STORE_YAML = """\
# Feast repository written by `dexctl init`. Store paths come from the environment that
# dexctl sets from its state folder (DEX_FEAST_REGISTRY, DEX_FEAST_ONLINE_DB).
project: {project}
provider: local
registry:
  registry_type: file
  path: ${{DEX_FEAST_REGISTRY}}
  cache_ttl_seconds: 60
online_store:
  type: sqlite
  path: ${{DEX_FEAST_ONLINE_DB}}
offline_store:
  type: file
entity_key_serialization_version: 3
"""

DEFINITIONS = '''"""Feast definitions written by `dexctl init` from {source_name}."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Bool, Float64, Int64, String

{entity_var} = Entity(name="{entity}", join_keys=["{key}"], value_type=ValueType.{value_type})

{project}_source = FileSource(
    name="{project}_source",
    path={path!r},
    timestamp_field="{timestamp}",
)

{project}_features = FeatureView(
    name="{project}_features",
    entities=[{entity_var}],
    ttl=timedelta(days={ttl_days}),
    schema=[
{fields}
    ],
    source={project}_source,
    online=True,
)

{service} = FeatureService(name="{service}", features=[{project}_features])
'''

_FEAST_TYPES = {"i": "Int64", "u": "Int64", "f": "Float64", "b": "Bool"}


class InitPlan(BaseModel):
    """Everything ``init`` decides from the file; written out by :func:`write_project`."""

    project: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    data_path: Path
    entity_key: str
    entity_key_type: str
    timestamp_column: str
    label: str
    task: TaskSetting
    features: dict[str, str] = Field(description="feature column -> Feast type name")
    ttl_days: int


def _snake(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "_" for c in text).strip("_")
    return out if out and out[0].isalpha() else f"p_{out}"


def plan_project(
    frame: Any,
    *,
    data_path: Path,
    project: str,
    entity_key: str | None,
    timestamp_column: str | None,
    label: str,
    task: TaskSetting,
) -> InitPlan:
    """Choose key, timestamp and feature types from ``frame``; ValueError names a problem."""
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    if label not in columns:
        raise ValueError(f"label {label!r} is not a column; columns are {columns}")
    if entity_key is None:
        candidates = [c for c in columns if c.lower() == "id" or c.lower().endswith("_id")]
        if not candidates:
            raise ValueError(f"no entity key column (*_id) found; pass --entity-key: {columns}")
        entity_key = candidates[0]
    if timestamp_column is None:
        stamps = [c for c in columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
        if not stamps:
            raise ValueError(f"no timestamp column found; pass --timestamp: {columns}")
        timestamp_column = stamps[0]
    for role, column in (("entity key", entity_key), ("timestamp", timestamp_column)):
        if column not in columns:
            raise ValueError(f"{role} {column!r} is not a column; columns are {columns}")
    keys = frame[entity_key]
    if pd.api.types.is_integer_dtype(keys):
        key_type = "int"
    elif not pd.api.types.is_numeric_dtype(keys):
        key_type = "str"
    else:
        raise ValueError(f"entity key {entity_key!r} must hold integers or text, not {keys.dtype}")
    features: dict[str, str] = {}
    for column in columns:
        if column in (entity_key, timestamp_column, label):
            continue
        kind = frame[column].dtype.kind
        features[column] = _FEAST_TYPES.get(kind, "String")
    if not features:
        raise ValueError("the file has no feature columns besides key, timestamp and label")
    # Written out as the task it is, so the file says what the runs will do (and the gate
    # below fits it); the pipeline's validation checks it again on every run.
    resolved, problems = resolve_task(frame[label], task, min_class_rows=1)
    if resolved is None:
        raise ValueError("; ".join(f"label {label!r}: {p.rule} ({p.detail})" for p in problems))
    stamps = pd.to_datetime(frame[timestamp_column], utc=True)
    span = (stamps.max() - stamps.min()).days
    return InitPlan(
        project=_snake(project),
        data_path=data_path,
        entity_key=entity_key,
        entity_key_type=key_type,
        timestamp_column=timestamp_column,
        label=label,
        task=resolved,
        features=features,
        # Every row stays visible to a point-in-time join within the file's span.
        ttl_days=max(span + 1, 1) * 2,
    )


def write_project(plan: InitPlan, directory: Path) -> dict[str, Path]:
    """dex.yaml and feature_repo/ under ``directory``; returns what was written."""
    repo = directory / "feature_repo"
    repo.mkdir(parents=True, exist_ok=True)
    service = f"{plan.project}_v1"
    fields = "\n".join(
        f'        Field(name="{name}", dtype={dtype}),' for name, dtype in plan.features.items()
    )
    (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML.format(project=plan.project))
    (repo / "definitions.py").write_text(
        DEFINITIONS.format(
            source_name=plan.data_path.name,
            entity_var=f"{plan.project}_entity",
            entity=plan.entity_key,
            key=plan.entity_key,
            value_type="INT64" if plan.entity_key_type == "int" else "STRING",
            project=plan.project,
            path=str(plan.data_path),
            timestamp=plan.timestamp_column,
            ttl_days=plan.ttl_days,
            fields=fields,
            service=service,
        )
    )
    description = {
        "entity_source": str(plan.data_path),
        "entity_key": plan.entity_key,
        "entity_key_type": plan.entity_key_type,
        "timestamp_column": plan.timestamp_column,
        "label": plan.label,
        "task": plan.task,
        "feature_repo": "feature_repo",
        "feature_service": service,
        "registered_model": plan.project.replace("_", "-"),
        "experiment": f"dex-{plan.project.replace('_', '-')}",
        "state_dir": ".dex",
        # R² above 0 beats predicting the mean; a classifier must beat chance clearly.
        "gates": {"metric": "", "min_value": 0.0 if plan.task == "regression" else 0.6},
    }
    project_file = directory / PROJECT_FILE
    project_file.write_text(
        "# DEX project description (dexctl init); DEX_* environment variables override it.\n"
        + yaml.safe_dump(description, sort_keys=False)
    )
    return {"project": project_file, "feature_repo": repo}


def init_cmd(
    data: Path = typer.Argument(..., help="Parquet or CSV file: entity rows with features."),
    label: str = typer.Option(..., help="Label column."),
    entity_key: str = typer.Option(None, help="Entity key column (default: the first *_id)."),
    timestamp: str = typer.Option(None, help="Event time column (default: the first datetime)."),
    task: str = typer.Option("auto", help="auto, binary, multiclass or regression."),
    name: str = typer.Option(None, help="Project name (default: the file's name)."),
    directory: Path = typer.Option(Path("."), help="Where dex.yaml and feature_repo/ go."),
    force: bool = typer.Option(False, help="Overwrite an existing dex.yaml."),
) -> None:
    """Scaffold dex.yaml and a Feast repo from a data file; then apply, materialize, train."""
    import pandas as pd

    if not data.is_file():
        console.print(f"[red]no such file: {data}[/]")
        raise typer.Exit(2)
    if (directory / PROJECT_FILE).exists() and not force:
        console.print(f"[red]{directory / PROJECT_FILE} exists[/]; pass --force to replace it")
        raise typer.Exit(2)
    if task not in ("auto", "binary", "multiclass", "regression"):
        console.print(f"[red]unknown task {task!r}[/]: auto, binary, multiclass or regression")
        raise typer.Exit(2)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        if data.suffix == ".csv":
            frame = pd.read_csv(data)
            if timestamp:
                frame[timestamp] = pd.to_datetime(frame[timestamp], utc=True)
            # Feast's file offline store reads Parquet: keep a converted copy by the project.
            parquet = (directory / "data" / data.with_suffix(".parquet").name).resolve()
            parquet.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(parquet, index=False)
        else:
            frame = pd.read_parquet(data)
            parquet = data.resolve()
        plan = plan_project(
            frame,
            data_path=parquet,
            project=name or data.stem,
            entity_key=entity_key,
            timestamp_column=timestamp,
            label=label,
            task=task,  # type: ignore[arg-type]  # checked above
        )
    except (ValueError, OSError) as exc:
        console.print(f"[red]cannot initialise from {data}:[/] {exc}")
        raise typer.Exit(2) from exc
    written = write_project(plan, directory)
    console.print(f"[green]wrote[/] {written['project']} and {written['feature_repo']}/")
    console.print(
        f"entity {plan.entity_key} ({plan.entity_key_type}), label {plan.label}, "
        f"task {plan.task}, {len(plan.features)} features"
    )
    console.print(
        "next: dexctl features apply && dexctl features materialize && "
        "dexctl pipeline run training && dexctl serve"
    )
