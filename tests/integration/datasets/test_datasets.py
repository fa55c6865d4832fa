"""Three public data sets through DEX by configuration alone (issue #13).

For each of scikit-learn's bundled iris (multiclass, string labels, string entity ids),
diabetes (regression, a text categorical feature) and breast_cancer (binary, string labels):
``dexctl init`` -> features apply/materialize -> ``dexctl pipeline run training`` ->
registered champion -> predictor + transformer + monitor -> V1 and V2 predictions equal the
model's own on Feast's offline features, value by value -> drifted traffic is flagged.
See ``dex_testing.datasets`` for how each data set was adapted.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from dex_serving.settings import DriftSettings
from dex_testing.datasets import DataSetWorld, build_in_subprocess, dexctl
from dexctl.local_serving import LocalServing, LocalServingConfig, ServingURLs
from dexctl.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="datasets")]

TRIALS = 4


def champion(world: DataSetWorld) -> tuple[Any, Any, str]:
    """(sklearn model, model version, tracking URI) of the project's champion."""
    import mlflow

    uri = world.tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = world.name.replace("_", "-")
    version = client.get_model_version_by_alias(name, "champion")
    # By its artifact URI, not models:/: mlflow.set_registry_uri would export
    # MLFLOW_REGISTRY_URI to every later test in this worker process.
    artifacts = client.get_model_version_download_uri(name, version.version)
    return mlflow.sklearn.load_model(artifacts), version, uri


def expected_predictions(world: DataSetWorld, model: Any) -> dict[Any, tuple[Any, list[float]]]:
    """The bare model on Feast's offline features: key -> (label, probabilities or [value])."""
    offline = pd.read_parquet(world.offline_path)
    x = offline[world.feature_columns]
    labels = model.predict(x)
    if world.task == "regression":
        scores = [[float(v)] for v in labels]
    else:
        scores = [[float(p) for p in row] for row in model.predict_proba(x)]
    keys = offline[world.entity_key].tolist()
    return {
        (k if isinstance(k, str) else int(k)): (
            lab.item() if hasattr(lab, "item") else lab,
            s,
        )
        for k, lab, s in zip(keys, labels, scores, strict=True)
    }


def check_row(task: str, got: dict[str, Any], want: tuple[Any, list[float]]) -> None:
    label, scores = want
    if task == "regression":
        assert got["label"] == pytest.approx(scores[0], rel=1e-12, abs=1e-12)
        return
    assert got["label"] == label
    if task == "binary":
        assert got["probability"] == pytest.approx(scores[1], rel=1e-12, abs=1e-15)
    else:
        assert got["probabilities"] == pytest.approx(scores, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", ["iris", "diabetes", "breast_cancer"])
def test_data_set_by_configuration_only(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    started = time.monotonic()
    world = build_in_subprocess(name, tmp_path_factory.mktemp(name))
    built = time.monotonic() - started

    started = time.monotonic()
    out = dexctl(
        ["pipeline", "run", "training", "-p", f"n_trials={TRIALS}"], world.project_dir, world.env
    )
    trained = time.monotonic() - started
    assert "pipeline training succeeded" in out

    model, version, uri = champion(world)
    tags = version.tags
    assert tags["dex.task"] == world.task
    assert json.loads(tags["dex.categorical_features"]) == world.categorical
    key_type = "str" if isinstance(world.reference_ids[0], str) else "int"
    assert tags["dex.entity_key_type"] == key_type
    expected = expected_predictions(world, model)

    marker = world.project_dir / "trigger-fired"
    config = LocalServingConfig(
        model=f"models:/{name.replace('_', '-')}@champion",
        tracking_uri=uri,
        feature_repo=world.project_dir / "feature_repo",
        state_dir=world.project_dir / "serving",
        env=world.env,
        drift=DriftSettings(
            window=100,
            min_rows=50,
            interval_s=3600,  # computed on demand below
            trigger_command=f"{sys.executable} -c \"open('{marker}', 'a').write('fired')\"",
            trigger_cooldown_s=0,
        ),
        log_file=world.project_dir / "serving.log",
    )
    with LocalServing(config) as urls:
        keys = list(expected)
        started = time.monotonic()
        v1 = httpx.post(
            urls.predict_url, json={"instances": [{world.entity_key: k} for k in keys]}, timeout=60
        )
        assert v1.status_code == 200, v1.text
        body = v1.json()
        for row in body["predictions"]:
            check_row(world.task, row, expected[row[world.entity_key]])
        if world.task != "regression":
            assert body["classes"] == [
                c.item() if hasattr(c, "item") else c for c in model.classes_
            ]

        v2 = httpx.post(urls.infer_url, json=v2_request(world, keys), timeout=60)
        assert v2.status_code == 200, v2.text
        outputs = {o["name"]: o for o in v2.json()["outputs"]}
        assert outputs[world.entity_key]["data"] == keys
        for i, key in enumerate(keys):
            row = {"label": outputs["label"]["data"][i]}
            if world.task == "binary":
                row["probability"] = outputs["probability"]["data"][i]
            if world.task == "multiclass":
                width = len(model.classes_)
                row["probabilities"] = outputs["probabilities"]["data"][i * width : (i + 1) * width]
            check_row(world.task, row, expected[key])
        predicted = time.monotonic() - started

        # Wrong key type: a clear 400, not a 500.
        wrong = 12345 if key_type == "str" else "abc"
        bad = httpx.post(
            urls.predict_url, json={"instances": [{world.entity_key: wrong}]}, timeout=30
        )
        assert bad.status_code == 400, bad.text
        assert "entity key" in bad.text or "integer" in bad.text

        drift = drifted_verdict(urls, world)
        assert drift["dataset_drift"] is True, drift
        assert drift["triggered"] is True, drift
        eventually(marker.exists, timeout=60, what="the retrain trigger's command ran")

    print(
        f"\n{name}: world {built:.1f}s, training pipeline {trained:.1f}s, "
        f"{2 * len(keys)} predictions checked in {predicted:.1f}s, drift share "
        f"{drift['drift_share']:.2f}"
    )


def v2_request(world: DataSetWorld, keys: list[Any]) -> dict[str, Any]:
    text = isinstance(keys[0], str)
    return {
        "id": "datasets",
        "inputs": [
            {
                "name": world.entity_key,
                "datatype": "BYTES" if text else "INT64",
                "shape": [len(keys)],
                "data": keys,
            }
        ],
    }


def drifted_verdict(urls: ServingURLs, world: DataSetWorld) -> dict[str, Any]:
    """Send the drifted batch's entities, then have the monitor compute drift now."""
    ids = world.drifted_ids
    response = httpx.post(
        urls.predict_url, json={"instances": [{world.entity_key: k} for k in ids]}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert urls.monitor is not None

    def computed() -> dict[str, Any]:
        # The transformer sends its events in batches: compute until the window holds them.
        result = httpx.post(f"{urls.monitor}/drift/compute", timeout=120)
        assert result.status_code == 200, result.text
        verdicts = result.json()
        assert verdicts, "no drift result yet"
        assert verdicts[0]["dataset_drift"], verdicts[0]
        return dict(verdicts[0])

    return eventually(computed, timeout=120, interval=1.0, what="drift on the drifted batch")


def test_offline_and_keys_types(tmp_path: Path) -> None:
    """The adapted frames keep what each case needs (string ids, text feature, labels)."""
    from dex_testing.datasets import SPECS, frames

    iris, iris_drift = frames(SPECS["iris"])
    assert isinstance(iris["row_id"][0], str)
    assert set(iris["species"]) == {"setosa", "versicolor", "virginica"}
    diabetes, _ = frames(SPECS["diabetes"])
    assert set(diabetes["bmi_band"]) == {"low", "mid", "high"}
    cancer, _ = frames(SPECS["breast_cancer"])
    assert set(cancer["diagnosis"]) == {"malignant", "benign"}
    assert not set(iris["row_id"]) & set(iris_drift["row_id"])
    assert (iris["event_timestamp"].diff().dropna() > pd.Timedelta(0)).all()
