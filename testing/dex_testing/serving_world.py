"""A self-contained churn world in one folder, for serving tests and benchmarks.

Uses the real generator (``dex.data.churn``) and the real Feast repo (``feature_repo/``):
reference customers plus a normal and a drifted later batch are written as Parquet, applied,
materialized online; a small sklearn model is trained on the reference customers' *offline*
features and registered as ``churn-classifier`` (alias ``champion``) with its feature contract
and reference data. Version 2 carries a contract that disagrees with the online feature
service, for the refuse-to-start check.

Run in a fresh process (``python -m dex_testing.serving_world <folder>``): Feast imports the repo's
definition modules by name and caches them, so one process builds one world.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dex.contract import FeatureContract
from dex_testing.fresh import run_module

MODEL_NAME = "churn-classifier"
SERVICE = "churn_v1"


class World(BaseModel):
    root: Path
    tracking_uri: str
    feature_repo: Path
    env: dict[str, str]
    model: str
    mismatched_model: str
    as_of: datetime
    reference_ids: list[int]
    normal_ids: list[int]
    drifted_ids: list[int]
    feature_columns: list[str]
    offline_path: Path

    @classmethod
    def load(cls, root: Path) -> World:
        return cls.model_validate_json((root / "world.json").read_text())


def build(root: Path, n_reference: int = 3000, n_batch: int = 1100) -> World:
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from dex import features
    from dex.data import churn
    from dex.settings import DexSettings
    from dex_testing import SOURCE_ROOT

    root = root.resolve()
    settings = DexSettings(state_dir=root / "state", feature_repo=SOURCE_ROOT / "feature_repo")
    env = features.feast_env(settings)
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(env)

    reference = churn.generate(churn.GeneratorConfig(n_customers=n_reference, seed=42))
    normal = churn.generate(
        churn.GeneratorConfig(n_customers=n_batch, seed=7, first_customer_id=100_000)
    )
    drifted = churn.generate(
        churn.GeneratorConfig(n_customers=n_batch, seed=8, drift=1.0, first_customer_id=200_000)
    )
    churn.write_parquet(reference, settings.data_dir)
    churn.write_parquet(normal, settings.data_dir, append=True)
    churn.write_parquet(drifted, settings.data_dir, append=True)

    features.apply(settings)
    cfg = churn.GeneratorConfig()
    last_snapshot = cfg.start + timedelta(weeks=cfg.weeks - 1)
    as_of = last_snapshot + timedelta(days=1)
    features.materialize(settings, end=as_of, start=cfg.start - timedelta(days=7))
    store = features.open_store(settings.feature_repo, settings)
    service = store.get_feature_service(SERVICE)
    refs = features.feature_refs(store, SERVICE)
    # Deliberately not the service order: the transformer must order by the contract.
    columns = sorted(r.split(":", 1)[1] for r in refs)

    training = store.get_historical_features(entity_df=reference.labels, features=service).to_df()
    training = training.dropna(subset=columns)
    x, y = training[columns].astype("float64"), training[churn.LABEL]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)

    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.create_experiment(
        "serving-sandbox", artifact_location=str(root / "artifacts")
    )
    contract = FeatureContract(
        feature_service=SERVICE,
        feature_refs=refs,
        feature_columns=columns,
        entity_key=churn.ENTITY_KEY,
        label=churn.LABEL,
        reference_data="reference/reference.parquet",
    )
    for version_contract in (contract, _mismatched(contract)):
        with mlflow.start_run(experiment_id=experiment):
            ref_file = root / "reference.parquet"
            x.to_parquet(ref_file, index=False)
            mlflow.log_artifact(str(ref_file), artifact_path="reference")
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                pip_requirements=["scikit-learn", "pandas"],
                serialization_format="cloudpickle",
                input_example=x.head(2),
                registered_model_name=MODEL_NAME,
            )
        version = str(info.registered_model_version)
        for key, value in version_contract.to_tags().items():
            client.set_model_version_tag(MODEL_NAME, version, key, value)
    client.set_registered_model_alias(MODEL_NAME, "champion", "1")

    active = set(training[churn.ENTITY_KEY].tolist())
    picks = [k for k in reference.labels[churn.ENTITY_KEY].tolist() if k in active][:60]
    batch_ids = normal.labels[churn.ENTITY_KEY].tolist()[:20]
    entity_df = pd.DataFrame(
        {churn.ENTITY_KEY: picks + batch_ids, churn.TIMESTAMP: pd.Timestamp(as_of)}
    )
    offline = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    offline_path = root / "offline.parquet"
    offline[[churn.ENTITY_KEY, *columns]].to_parquet(offline_path, index=False)

    world = World(
        root=root,
        tracking_uri=tracking_uri,
        feature_repo=settings.feature_repo,
        env=env,
        model=f"models:/{MODEL_NAME}@champion",
        mismatched_model=f"models:/{MODEL_NAME}/2",
        as_of=as_of.astimezone(UTC) if as_of.tzinfo else as_of.replace(tzinfo=UTC),
        reference_ids=[int(k) for k in picks],
        normal_ids=_active(normal),
        drifted_ids=_active(drifted),
        feature_columns=columns,
        offline_path=offline_path,
    )
    (root / "world.json").write_text(world.model_dump_json(indent=2))
    return world


def register_copies(world: World, count: int) -> list[str]:
    """``count`` new versions of the champion (version 1): the same model, contract and
    reference data, logged again so each has its own storage URI, as retraining on unchanged
    data would produce. Returns their version numbers."""
    import tempfile

    import mlflow

    mlflow.set_tracking_uri(world.tracking_uri)
    mlflow.set_registry_uri(world.tracking_uri)
    client = mlflow.MlflowClient()
    champion = client.get_model_version(MODEL_NAME, "1")
    model = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/1")
    experiment = client.get_run(champion.run_id or "").info.experiment_id
    versions = []
    with tempfile.TemporaryDirectory() as scratch:
        reference = mlflow.artifacts.download_artifacts(
            run_id=champion.run_id, artifact_path="reference", dst_path=scratch
        )
        for _ in range(count):
            with mlflow.start_run(experiment_id=experiment):
                mlflow.log_artifacts(reference, artifact_path="reference")
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    pip_requirements=["scikit-learn", "pandas"],
                    serialization_format="cloudpickle",
                    registered_model_name=MODEL_NAME,
                )
            version = str(info.registered_model_version)
            for key, value in champion.tags.items():
                client.set_model_version_tag(MODEL_NAME, version, key, value)
            versions.append(version)
    return versions


def _active(dataset: Any) -> list[int]:
    """Customers with activity snapshots (the generator leaves a few without: unknown online)."""
    return sorted(int(k) for k in set(dataset.activity["customer_id"].tolist()))


def _mismatched(contract: FeatureContract) -> FeatureContract:
    refs = [r for r in contract.feature_refs if not r.endswith(":age")] + [
        "customer_profile:shoe_size"
    ]
    return contract.model_copy(update={"feature_refs": refs})


def build_in_subprocess(root: Path, timeout_s: float = 600) -> World:
    run_module("dex_testing.serving_world", str(root), timeout_s=timeout_s)
    return World.load(root)


def register_copies_in_subprocess(world: World, count: int, timeout_s: float = 600) -> list[str]:
    """:func:`register_copies` in a fresh process: MLflow's set_tracking/registry_uri export
    environment variables that would send later tests' MLflow calls to this world."""
    out = run_module(
        "dex_testing.serving_world", "copies", str(world.root), str(count), timeout_s=timeout_s
    )
    return [str(v) for v in json.loads(out.strip().splitlines()[-1])]


if __name__ == "__main__":
    if sys.argv[1] == "copies":
        print(json.dumps(register_copies(World.load(Path(sys.argv[2])), int(sys.argv[3]))))
    else:
        built = build(Path(sys.argv[1]))
        print(json.dumps({"world": str(built.root / "world.json")}))
