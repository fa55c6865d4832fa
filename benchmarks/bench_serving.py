"""Serving latency and drift computation time.

(a) the model's bare predict (in-process, one row, as the predictor calls it);
(b) the predictor alone over HTTP (V1, one row of features);
(c) transformer + predictor with the Feast online lookup (V1 and V2, one entity), with
    inference logging to the monitor on.
Sequential latency over one keep-alive connection, then throughput with concurrent clients.
Then Evidently drift on a 10k-row window. Targets: (c) p99 < 15 ms and < 2x (b); drift < 3 s.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

SEQUENTIAL = 1000
WARMUP = 100
CONCURRENCY = 8
THROUGHPUT_REQUESTS = 2000


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def _sequential(call: Callable[[int], None]) -> dict[str, float]:
    for i in range(WARMUP):
        call(i)
    samples: list[float] = []
    for i in range(SEQUENTIAL):
        started = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return _percentiles(samples)


def _throughput(url: str, bodies: list[dict[str, Any]]) -> float:
    per_thread = THROUGHPUT_REQUESTS // CONCURRENCY
    errors: list[int] = []

    def worker(offset: int) -> None:
        with httpx.Client(timeout=30) as client:
            for i in range(per_thread):
                response = client.post(url, json=bodies[(offset + i) % len(bodies)])
                if response.status_code != 200:
                    errors.append(response.status_code)

    threads = [threading.Thread(target=worker, args=(t * 97,)) for t in range(CONCURRENCY)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"throughput run saw errors: {errors[:5]}")
    return round(per_thread * CONCURRENCY / elapsed, 1)


def run() -> list[dict[str, object]]:
    import mlflow
    import pandas as pd

    from dex_serving.monitor import drift
    from dex_serving.settings import DriftSettings
    from dex_testing.serving_world import build_in_subprocess
    from dexctl.local_serving import LocalServing, LocalServingConfig

    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="dex-bench-serving-") as tmp:
        world = build_in_subprocess(Path(tmp) / "world")
        offline = pd.read_parquet(world.offline_path)
        features = offline[world.feature_columns].astype("float64")
        keys = [int(k) for k in offline["customer_id"]]

        mlflow.set_tracking_uri(world.tracking_uri)
        model = mlflow.sklearn.load_model(world.model)
        matrix = features.to_numpy()

        order = list(model.feature_names_in_)
        by_model_order = features[order].to_numpy()

        def bare(i: int) -> None:
            # As the predictor calls it: one row, columns in feature_names_in_ order.
            row = by_model_order[i % len(by_model_order)][None, :]
            model.predict(row)
            model.predict_proba(row)

        rows.append({"bench": "serving", "case": "(a) bare model predict", **_sequential(bare)})

        os.environ.update(world.env)
        from feast import FeatureStore

        from dex.features import feature_refs

        store = FeatureStore(repo_path=str(world.feature_repo))
        refs = feature_refs(store, "churn_v1")

        def online(i: int) -> None:
            store.get_online_features(
                features=refs, entity_rows=[{"customer_id": keys[i % len(keys)]}]
            ).to_dict()

        rows.append(
            {
                "bench": "serving",
                "case": "Feast online read, 1 entity (in-process)",
                **_sequential(online),
            }
        )

        config = LocalServingConfig(
            model=world.model,
            tracking_uri=world.tracking_uri,
            feature_repo=world.feature_repo,
            state_dir=world.root / "serving",
            env=world.env,
            drift=DriftSettings(interval_s=3600),
            log_file=world.root / "serving.log",
        )
        with LocalServing(config) as urls, httpx.Client(timeout=30) as client:
            predictor_url = f"{urls.predictor}/v1/models/{urls.model_name}:predict"
            feature_bodies = [{"instances": [row]} for row in matrix.tolist()]
            entity_bodies = [{"instances": [{"customer_id": k}]} for k in keys]
            v2_bodies = [
                {
                    "inputs": [
                        {"name": "customer_id", "datatype": "INT64", "shape": [1], "data": [k]}
                    ]
                }
                for k in keys
            ]

            def post(url: str, bodies: list[dict[str, Any]]) -> Callable[[int], None]:
                def call(i: int) -> None:
                    response = client.post(url, json=bodies[i % len(bodies)])
                    if response.status_code != 200:
                        raise RuntimeError(response.text)

                return call

            cases = [
                ("(b) predictor alone, V1", predictor_url, feature_bodies),
                ("(c) transformer + predictor + Feast, V1", urls.predict_url, entity_bodies),
                ("(c) transformer + predictor + Feast, V2", urls.infer_url, v2_bodies),
            ]
            for name, url, bodies in cases:
                latency = _sequential(post(url, bodies))
                rows.append(
                    {
                        "bench": "serving",
                        "case": name,
                        **latency,
                        f"throughput_rps_{CONCURRENCY}_clients": _throughput(url, bodies),
                    }
                )

        reference = drift.load_reference(world.root / "reference.parquet", world.feature_columns)
        rng = np.random.default_rng(0)
        sample = reference.sample(10_000, replace=True, random_state=1).reset_index(drop=True)
        current = sample + rng.normal(0, 0.05, size=sample.shape) * sample.std().to_numpy()
        drift.compute(  # the first run pays Evidently's import; measure the steady state
            reference, current.head(500), columns=world.feature_columns,
            method="wasserstein", threshold=0.1, drift_share=0.5,
        )  # fmt: skip
        timings = []
        for _ in range(3):
            result = drift.compute(
                reference, current, columns=world.feature_columns,
                method="wasserstein", threshold=0.1, drift_share=0.5,
                html_path=world.root / "report.html",
            )  # fmt: skip
            timings.append(result.seconds)
        rows.append(
            {
                "bench": "serving",
                "case": f"drift, {len(current)}-row window x {len(world.feature_columns)} features (+HTML)",
                "p50_ms": round(statistics.median(timings) * 1000, 1),
                "p99_ms": round(max(timings) * 1000, 1),
                "mean_ms": round(statistics.fmean(timings) * 1000, 1),
            }
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
