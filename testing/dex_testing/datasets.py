"""Public tabular data sets as DEX projects, set up by configuration only.

scikit-learn ships small real data sets inside the package (no network). Each becomes one
Parquet file of entity rows (key, event time, features, label) and a project made the way a
user makes one: ``dexctl init`` writes ``dex.yaml`` and the Feast repo, ``dexctl features
apply`` / ``materialize`` load it. No DEX code knows these data sets.

Adaptations, since the originals are plain feature matrices:

* every row gets an entity id and an event time (rows are shuffled first, so a time split
  does not follow the original class order);
* ``iris``: string labels (``target_names``), string entity ids (``iris-0001``), and a
  drifted batch of later rows;
* ``diabetes``: integer ids, and a text column ``bmi_band`` (low/mid/high from ``bmi``), a
  categorical feature the model encodes itself;
* ``breast_cancer``: string labels (malignant/benign), integer ids;
* column names become snake_case (Feast field names).

Each project also has a drifted batch: later rows of new entities, features shifted by
several standard deviations, in the feature file but not among the labelled entity rows,
so the monitor has traffic to flag.

Build in a fresh process (``python -m dex_testing.datasets NAME FOLDER``): Feast imports a
repo's modules by name and caches them, so one process handles one repo.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dex_testing.fresh import run_checked, run_module

START = datetime(2026, 3, 2, tzinfo=UTC)
DRIFT_ROWS = 120
DEXCTL = [sys.executable, "-m", "dexctl"]


class DataSetSpec(BaseModel):
    name: str
    loader: str
    label: str
    task: str
    string_labels: bool
    string_ids: bool
    categorical: list[str]


SPECS: dict[str, DataSetSpec] = {
    "iris": DataSetSpec(
        name="iris",
        label="species",
        loader="load_iris",
        task="multiclass",
        string_labels=True,
        string_ids=True,
        categorical=[],
    ),
    "diabetes": DataSetSpec(
        name="diabetes",
        label="target",
        loader="load_diabetes",
        task="regression",
        string_labels=False,
        string_ids=False,
        categorical=["bmi_band"],
    ),
    "breast_cancer": DataSetSpec(
        name="breast_cancer",
        label="diagnosis",
        loader="load_breast_cancer",
        task="binary",
        string_labels=True,
        string_ids=False,
        categorical=[],
    ),
}


class DataSetWorld(BaseModel):
    name: str
    task: str
    project_dir: Path
    tracking_uri: str
    env: dict[str, str]
    entity_key: str
    label: str
    feature_columns: list[str]
    categorical: list[str]
    reference_ids: list[int | str]
    drifted_ids: list[int | str]
    offline_path: Path
    seconds: dict[str, float]

    @classmethod
    def load(cls, root: Path) -> DataSetWorld:
        return cls.model_validate_json((root / "world.json").read_text())


def _snake(name: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "_" for c in name)
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_")


def frames(spec: DataSetSpec, seed: int = 0) -> tuple[Any, Any]:
    """(labelled rows, drifted rows) for ``spec``: id, event_timestamp, features, label."""
    import numpy as np
    import pandas as pd
    from sklearn import datasets

    bunch = getattr(datasets, spec.loader)(as_frame=True)
    data = bunch.frame.rename(columns=_snake)
    label = spec.label
    data = data.rename(columns={"target": label})
    if spec.string_labels:
        data[label] = np.asarray(bunch.target_names, dtype=object)[bunch.target.to_numpy()]
    features = [c for c in data.columns if c != label]
    if "bmi_band" in spec.categorical:
        data["bmi_band"] = pd.cut(data["bmi"], 3, labels=["low", "mid", "high"]).astype(str)
        features.append("bmi_band")
    rng = np.random.default_rng(seed)
    data = data.iloc[rng.permutation(len(data))].reset_index(drop=True)

    drifted = data.sample(DRIFT_ROWS, replace=True, random_state=seed).reset_index(drop=True)
    numeric = [c for c in features if c not in spec.categorical]
    for column in numeric:
        drifted[column] = drifted[column] + 4.0 * float(data[column].std())
    if spec.categorical:
        drifted[spec.categorical[0]] = "high"

    n = len(data)

    def ids(start: int, count: int) -> list[Any]:
        if spec.string_ids:
            return [f"{spec.name}-{i:05d}" for i in range(start, start + count)]
        return list(range(start, start + count))

    data.insert(0, "row_id", ids(1, n))
    data.insert(1, "event_timestamp", [START + timedelta(hours=i) for i in range(n)])
    later = START + timedelta(hours=n + 24)
    drifted.insert(0, "row_id", ids(n + 1, DRIFT_ROWS))
    drifted.insert(1, "event_timestamp", [later + timedelta(hours=i) for i in range(DRIFT_ROWS)])
    return data, drifted


def dexctl(args: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 900) -> str:
    return run_checked([*DEXCTL, *args], timeout_s=timeout_s, cwd=cwd, env=env)


def clean_env(project_dir: Path) -> dict[str, str]:
    """This process's environment without any DEX/MLflow store setting: dex.yaml decides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEX_", "MLFLOW_"))}
    env.update(
        {
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "FEAST_USAGE": "False",
            "COLUMNS": "200",
            "DEX_PROJECT_FILE": str(project_dir / "dex.yaml"),
        }
    )
    return env


def build(name: str, root: Path) -> DataSetWorld:
    """Data file -> dexctl init -> (dex.yaml edits) -> features apply / materialize, and the
    offline features of some entities for the prediction check."""
    import time

    import pandas as pd

    spec = SPECS[name]
    root = root.resolve()
    project = root / "project"
    project.mkdir(parents=True, exist_ok=True)
    data, drifted = frames(spec)
    label = spec.label
    features_file = root / f"{name}.parquet"
    labels_file = root / f"{name}_labels.parquet"
    pd.concat([data, drifted], ignore_index=True).to_parquet(features_file, index=False)
    data[["row_id", "event_timestamp", label]].to_parquet(labels_file, index=False)

    env = clean_env(project)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    init_env = {k: v for k, v in env.items() if k != "DEX_PROJECT_FILE"}
    dexctl(
        ["init", str(features_file), "--label", label, "--name", name, "--directory", "."],
        project,
        init_env,
    )
    # The one edit a user makes here: the labelled rows are a file of their own (the drifted
    # batch has features but no labels), and the small data sets get a lenient gate.
    text = (project / "dex.yaml").read_text()
    text = text.replace(f"entity_source: {features_file}", f"entity_source: {labels_file}")
    (project / "dex.yaml").write_text(text)
    seconds["init"] = time.monotonic() - started

    started = time.monotonic()
    dexctl(["features", "apply"], project, env)
    end = START + timedelta(days=60)
    dexctl(
        [
            "features",
            "materialize",
            "--start",
            (START - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S"),
            "--end",
            end.strftime("%Y-%m-%dT%H:%M:%S"),
        ],
        project,
        env,
    )
    seconds["features"] = time.monotonic() - started

    # Offline features at the same instant, in this process (the one repo it opens).
    os.environ.update(env)
    from dex import features as dex_features
    from dex.settings import DexSettings

    os.chdir(project)
    settings = DexSettings()
    store = dex_features.open_store(settings.feature_repo, settings)
    refs = dex_features.feature_refs(store, settings.feature_service)
    columns = [r.split(":", 1)[1] for r in refs]
    picks = data["row_id"].tolist()[:40] + drifted["row_id"].tolist()[:10]
    # Just after the newest row: every entity's one row is within the views' TTL.
    as_of = pd.Timestamp(drifted["event_timestamp"].max()) + pd.Timedelta(hours=1)
    entity_df = pd.DataFrame({"row_id": picks, "event_timestamp": as_of})
    offline = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(settings.feature_service)
    ).to_df()
    if len(offline) != len(picks) or offline[columns].isna().any().any():
        raise RuntimeError(f"offline features missing for some of {picks}")
    offline_path = root / "offline.parquet"
    offline[["row_id", *columns]].to_parquet(offline_path, index=False)

    world = DataSetWorld(
        name=name,
        task=spec.task,
        project_dir=project,
        tracking_uri=settings.tracking_uri,
        # The servers find the project's Feast stores as `dexctl serve` tells them.
        env={**env, **dex_features.feast_env(settings)},
        entity_key="row_id",
        label=label,
        feature_columns=columns,
        categorical=spec.categorical,
        reference_ids=data["row_id"].tolist(),
        drifted_ids=drifted["row_id"].tolist(),
        offline_path=offline_path,
        seconds=seconds,
    )
    (root / "world.json").write_text(world.model_dump_json(indent=2))
    return world


def build_in_subprocess(name: str, root: Path, timeout_s: float = 900) -> DataSetWorld:
    run_module("dex_testing.datasets", name, str(root), timeout_s=timeout_s)
    return DataSetWorld.load(root)


if __name__ == "__main__":
    built = build(sys.argv[1], Path(sys.argv[2]))
    print(json.dumps({"world": str(built.project_dir.parent / "world.json")}))
