"""Predictions over HTTP through real predictor and transformer processes, checked against
the model's own predict on features read from Feast *offline* at the same timestamp."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from dex.metrics import INFERENCE_EVENTS_DROPPED, INFERENCE_EVENTS_SENT, version_label
from dex_testing.serving_world import World
from dexctl.local_serving import ServingURLs
from dexctl.processes import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="serving")]


@pytest.fixture(scope="module")
def offline(world: World) -> pd.DataFrame:
    return pd.read_parquet(world.offline_path).sort_values("customer_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def expected(world: World, offline: pd.DataFrame) -> dict[int, tuple[int, float]]:
    """The bare model on offline features: customer_id -> (label, P(churn))."""
    import mlflow

    mlflow.set_tracking_uri(world.tracking_uri)
    model = mlflow.sklearn.load_model(world.model)
    x = offline[world.feature_columns].astype("float64")
    labels = model.predict(x)
    proba = model.predict_proba(x)[:, 1]
    return {
        int(k): (int(lab), float(p))
        for k, lab, p in zip(offline["customer_id"], labels, proba, strict=True)
    }


def _assert_matches(
    expected: dict[int, tuple[int, float]], got: list[tuple[int, int, float]]
) -> None:
    assert len(got) == len(expected)
    for key, label, probability in got:
        want_label, want_p = expected[key]
        assert label == want_label, key
        assert probability == pytest.approx(want_p, rel=1e-12, abs=1e-15), key


def test_v1_through_transformer_equals_offline_predict(
    entry: ServingURLs, expected: dict[int, tuple[int, float]]
) -> None:
    keys = sorted(expected)
    response = httpx.post(
        entry.predict_url, json={"instances": [{"customer_id": k} for k in keys]}, timeout=30
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "1"
    got = [(p["customer_id"], p["label"], p["probability"]) for p in body["predictions"]]
    assert [g[0] for g in got] == keys
    _assert_matches(expected, got)


def test_v2_through_transformer_equals_offline_predict(
    entry: ServingURLs, expected: dict[int, tuple[int, float]]
) -> None:
    keys = sorted(expected)
    request = {
        "id": "consistency",
        "inputs": [
            {"name": "customer_id", "datatype": "INT64", "shape": [len(keys)], "data": keys}
        ],
    }
    response = httpx.post(entry.infer_url, json=request, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "consistency"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["customer_id"]["data"] == keys
    assert outputs["probability"]["datatype"] == "FP64"
    got = list(
        zip(
            outputs["customer_id"]["data"],
            outputs["label"]["data"],
            outputs["probability"]["data"],
            strict=True,
        )
    )
    _assert_matches(expected, got)


def test_predictor_alone_v1_and_v2(
    stack: ServingURLs, world: World, offline: pd.DataFrame, expected: dict[int, tuple[int, float]]
) -> None:
    rows = offline[world.feature_columns].astype("float64")
    v1 = httpx.post(
        f"{stack.predictor}/v1/models/{stack.model_name}:predict",
        json={"instances": rows.to_numpy().tolist()},
        timeout=30,
    )
    assert v1.status_code == 200, v1.text
    v1_body = v1.json()
    assert v1_body["classes"] == [0, 1]
    probabilities = np.asarray(v1_body["probabilities"])[:, 1]
    _assert_matches(
        expected,
        list(zip(offline["customer_id"], v1_body["predictions"], probabilities, strict=True)),
    )
    v2 = httpx.post(
        f"{stack.predictor}/v2/models/{stack.model_name}/infer",
        json={
            "inputs": [
                {"name": c, "datatype": "FP64", "shape": [len(rows)], "data": rows[c].tolist()}
                for c in world.feature_columns
            ]
        },
        timeout=30,
    )
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert outputs["probabilities"]["shape"] == [len(rows), 2]
    proba = np.asarray(outputs["probabilities"]["data"]).reshape(len(rows), 2)[:, 1]
    _assert_matches(
        expected,
        list(zip(offline["customer_id"], outputs["label"]["data"], proba, strict=True)),
    )


def test_readiness_and_metrics(stack: ServingURLs) -> None:
    assert httpx.get(f"{stack.predictor}/v1/models/{stack.model_name}").json()["ready"] is True
    metrics = httpx.get(f"{stack.transformer}/metrics").text
    # Declared series, whatever traffic other tests sent: each must be exported by name.
    for series, kind in [
        (f"{INFERENCE_EVENTS_SENT}_total", "counter"),
        (f"{INFERENCE_EVENTS_DROPPED}_total", "counter"),
        ("request_preprocess_seconds", "histogram"),
        ("request_predict_seconds", "histogram"),
    ]:
        assert f"# TYPE {series} {kind}" in metrics, series


BAD: list[tuple[str, str, bytes, str]] = [
    ("v1", "malformed JSON", b'{"instances": [', "Unrecognized request format"),
    ("v1", "not an object", b"[1, 2, 3]", "must be a JSON object"),
    ("v1", "no instances", b'{"rows": []}', "no 'instances'"),
    ("v1", "wrong type", b'{"instances": [{"customer_id": "abc"}]}', "expected an integer"),
    (
        "v1",
        "missing entity key",
        b'{"instances": [{"tenure": 3}]}',
        "missing entity key 'customer_id'",
    ),
    (
        "v1",
        "unknown entity",
        b'{"instances": [{"customer_id": 987654321}]}',
        "unknown customer_id [987654321]",
    ),
    (
        "v1",
        "wrong shape",
        b'{"instances": [[1000, 1001]]}',
        "expected an object with 'customer_id'",
    ),
    ("v1", "empty batch", b'{"instances": []}', "empty batch"),
    ("v1", "bool key", b'{"instances": [{"customer_id": true}]}', "expected an integer"),
    ("v2", "malformed JSON", b'{"inputs": [', "JSON decode error"),
    (
        "v2",
        "missing entity key",
        b'{"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [1]}]}',
        "missing input 'customer_id'",
    ),
    (
        "v2",
        "wrong type",
        b'{"inputs": [{"name": "customer_id", "datatype": "FP64", "shape": [1], "data": [1.5]}]}',
        "expected an integer datatype",
    ),
    (
        "v2",
        "wrong shape",
        b'{"inputs": [{"name": "customer_id", "datatype": "INT64", "shape": [2, 2], "data": [1000, 1001, 1002, 1003]}]}',
        "expected shape [n]",
    ),
    (
        "v2",
        "shape/data mismatch",
        b'{"inputs": [{"name": "customer_id", "datatype": "INT64", "shape": [3], "data": [1000]}]}',
        "does not match",
    ),
]


@pytest.mark.parametrize(
    ("protocol", "case", "body", "message"), BAD, ids=[f"{p}-{c}" for p, c, _, _ in BAD]
)
def test_bad_input_is_a_4xx_naming_the_problem(
    entry: ServingURLs, protocol: str, case: str, body: bytes, message: str
) -> None:
    url = entry.predict_url if protocol == "v1" else entry.infer_url
    response = httpx.post(url, content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    payload: Any = response.json()
    assert isinstance(payload, dict)
    assert message in str(payload), (case, payload)


def test_oversized_batch_is_rejected(entry: ServingURLs) -> None:
    keys = list(range(1000, 2001))
    response = httpx.post(entry.predict_url, json={"instances": [{"customer_id": k} for k in keys]})
    assert response.status_code == 400
    assert "exceeds the maximum of 1000" in response.json()["error"]


def test_transformer_refuses_a_contract_the_online_service_does_not_match(world: World) -> None:
    env_extra = {**world.env, "MLFLOW_DISABLE_TELEMETRY": "true"}
    import os

    ports = free_ports(2)
    done = subprocess.run(
        [
            sys.executable, "-m", "dex_serving.run", "transformer",
            "--model", world.mismatched_model,
            "--tracking-uri", world.tracking_uri,
            "--feature-repo", str(world.feature_repo),
            "--predictor-host", f"127.0.0.1:{ports[0]}",
            "--port", str(ports[1]),
        ],
        env={**os.environ, **env_extra},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "differs from the model's feature contract" in output
    assert "customer_profile:shoe_size" in output
    assert "customer_profile:age" in output


def test_predictor_loads_a_plain_storage_uri(
    world: World, offline: pd.DataFrame, expected: dict[int, tuple[int, float]]
) -> None:
    """Not only registry references: a model folder (what a storageUri points at) loads too."""
    import mlflow

    from dex.registry import ModelRef, resolve
    from dex_serving.predictor import LoadedModel

    mlflow.set_tracking_uri(world.tracking_uri)
    source = mlflow.MlflowClient().get_model_version("churn-classifier", "1").source
    folder = mlflow.artifacts.download_artifacts(source)
    loaded = LoadedModel(resolve(ModelRef.parse(folder), served_name="churn"))
    # The label the monitor records and the operator's drift gate asks for (dex.metrics).
    assert loaded.resolved.version == version_label(None, folder)
    assert loaded.resolved.version.startswith("uri-")
    assert loaded.columns == world.feature_columns
    labels, probabilities = loaded.predict(offline[loaded.columns].to_numpy(dtype="float64"))
    assert probabilities is not None
    _assert_matches(
        expected,
        list(zip(offline["customer_id"], labels.tolist(), probabilities[:, 1], strict=True)),
    )
