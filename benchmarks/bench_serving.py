"""Serving latency and drift computation time.

(a) the model's bare predict (in-process, one row, as the predictor calls it);
(b) the predictor alone over HTTP (V1 and V2, one row of features);
(c) transformer + predictor with the Feast online lookup (V1 and V2, one entity), with
    inference logging to the monitor on (``spec.features.component: transformer``);
(d) the predictor reading Feast itself, one hop, logging to the same monitor
    (``spec.features.component: predictor``);
floor: the same enriched prediction with no framework around it: a stdlib HTTP server that
    reads the entity's features from Feast and calls the model, one loopback hop.
Sequential latency over one keep-alive connection, in interleaved rounds (each figure the
median over rounds), then throughput with concurrent clients.
Then Evidently drift on a 10k-row window. Targets: feature-enriched p99 <= 1.5x (b) of the same
protocol; Feast read p99 <= 1 ms; drift < 3 s.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np

SEQUENTIAL = 1000
WARMUP = 100
CONCURRENCY = 8
THROUGHPUT_REQUESTS = 2000
ROUNDS = 5
FLOOR_CASE = "FLOOR: Feast read + predict behind a stdlib HTTP server"


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


def _median(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds."""
    return {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]}


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


@contextmanager
def _floor_server(predict: Callable[[int], dict[str, Any]]) -> Iterator[str]:
    """HTTP/1.1 keep-alive on loopback, JSON in and out, nothing else: the hop's floor."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY the second waits for
        # the client's delayed ACK (~40 ms), which no real server pays.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            out = json.dumps(predict(int(body["instances"][0]["customer_id"]))).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: Any) -> None:
            """No access log: a line per request would be the floor's own overhead."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    finally:
        server.shutdown()
        server.server_close()


def _ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> float:
    return round(float(numerator["p99_ms"]) / float(denominator["p99_ms"]), 2)


def run() -> list[dict[str, object]]:
    import mlflow
    import pandas as pd

    from dex_serving.monitor import drift
    from dex_serving.settings import DriftSettings
    from dex_testing.serving_world import build_in_subprocess
    from dexctl.local_serving import LocalServing, LocalServingConfig
    from dexctl.polling import eventually

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

        def enriched(key: int) -> dict[str, Any]:
            online = store.get_online_features(
                features=refs, entity_rows=[{"customer_id": key}]
            ).to_dict()
            row = np.asarray([[float(online[c][0]) for c in order]])
            label = model.predict(row)[0]
            probability = model.predict_proba(row)[0, -1]
            return {
                "predictions": [
                    {"customer_id": key, "label": int(label), "probability": float(probability)}
                ]
            }

        with (
            LocalServing(config) as urls,
            LocalServing(
                config.model_copy(
                    update={
                        "state_dir": world.root / "one-hop",
                        "feature_component": "predictor",
                        "monitor": False,
                        "monitor_url": urls.monitor,
                        "log_file": world.root / "one-hop.log",
                    }
                )
            ) as one_hop,
            _floor_server(enriched) as floor_url,
            httpx.Client(timeout=30) as client,
        ):
            predictor_url = f"{urls.predictor}/v1/models/{urls.model_name}:predict"
            predictor_v2_url = f"{urls.predictor}/v2/models/{urls.model_name}/infer"
            feature_bodies = [{"instances": [row]} for row in matrix.tolist()]
            feature_v2_bodies = [
                {
                    "inputs": [
                        {"name": c, "datatype": "FP64", "shape": [1], "data": [float(v)]}
                        for c, v in zip(world.feature_columns, row, strict=True)
                    ]
                }
                for row in matrix.tolist()
            ]
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
                ("v1", "(b) predictor alone", predictor_url, feature_bodies),
                ("v2", "(b) predictor alone", predictor_v2_url, feature_v2_bodies),
                ("v1", "(c) transformer + predictor + Feast", urls.predict_url, entity_bodies),
                ("v2", "(c) transformer + predictor + Feast", urls.infer_url, v2_bodies),
                ("v1", "(d) predictor + Feast, one hop", one_hop.predict_url, entity_bodies),
                ("v2", "(d) predictor + Feast, one hop", one_hop.infer_url, v2_bodies),
                ("v1", FLOOR_CASE, floor_url, entity_bodies),
            ]
            logged = 0  # inferences the (c) and (d) servers have logged to the monitor

            def ingested() -> bool:
                count = client.get(f"{urls.monitor}/events/count").json()
                return int(count["requests"]) >= logged

            def settle() -> None:
                # A case starts with the monitor done with the events of the ones before (a
                # throughput run logs thousands): its latency carries its own logging only.
                eventually(ingested, timeout=300, interval=0.2, what="the monitor's backlog")

            # Interleaved rounds: a one-off stall of this VM lands in one round of one case,
            # and the median over rounds does not carry it into a ratio.
            rounds: dict[str, list[dict[str, float]]] = {}
            for _ in range(ROUNDS):
                for protocol, name, url, bodies in cases:
                    settle()
                    latency = _sequential(post(url, bodies))
                    rounds.setdefault(f"{name}, {protocol.upper()}", []).append(latency)
                    if name.startswith(("(c)", "(d)")):
                        logged += WARMUP + SEQUENTIAL
            alone: dict[str, dict[str, Any]] = {}
            floor_case = f"{FLOOR_CASE}, V1"
            floor = {"bench": "serving", "case": floor_case, **_median(rounds[floor_case])}
            for protocol, name, url, bodies in cases[:-1]:  # all but the floor
                case = f"{name}, {protocol.upper()}"
                row: dict[str, Any] = {"bench": "serving", "case": case, **_median(rounds[case])}
                settle()
                row[f"throughput_rps_{CONCURRENCY}_clients"] = _throughput(url, bodies)
                if name.startswith("(b)"):
                    alone[protocol] = row
                else:
                    logged += THROUGHPUT_REQUESTS // CONCURRENCY * CONCURRENCY
                    # The bar: feature-enriched p99 <= 1.5x the predictor alone.
                    row["p99_vs_predictor_alone"] = _ratio(row, alone[protocol])
                    row["p99_vs_floor"] = _ratio(row, floor)
                rows.append(row)
            rows.append(floor)

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
