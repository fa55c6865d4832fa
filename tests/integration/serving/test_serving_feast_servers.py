"""The transformer as it runs in a cluster: its repository has no stores of its own, and it
reads the feature service and the online values from Feast's registry server (``feast
serve_registry``) and online feature server (``feast serve``), real processes on loopback over
this world's stores. Its predictions equal the model's on *offline* features, as the
transformer reading the stores directly does (test_serving_predictions)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from dex_testing.serving_world import World
from dexctl.local_serving import ServingURLs
from dexctl.processes import Child, free_ports, port_is_free

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="serving")]

FEAST = str(Path(sys.executable).with_name("feast"))


@pytest.fixture(scope="module")
def remote_transformer(
    world: World, stack: ServingURLs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("feast-servers")
    online, registry, port = free_ports(3)
    repo = str(world.feature_repo)
    # TMPDIR: `feast serve` keeps its Prometheus files in a mkdtemp folder it never removes
    # when stopped; in the test's folder, they go with it.
    servers_env = {**os.environ, **world.env, "TMPDIR": str(logs)}
    children = []
    try:
        server = Child(
            "feast-serve",
            [FEAST, "-c", repo, "serve", "--host=127.0.0.1", f"--port={online}", "--workers=1"],
            log=logs / "serve.log",
            env=servers_env,
        )
        children.append(server)
        registry_server = Child(
            "feast-serve-registry",
            [FEAST, "-c", repo, "serve_registry", f"--port={registry}"],
            log=logs / "registry.log",
            env=servers_env,
        )
        children.append(registry_server)
        server.wait_ready(
            lambda: httpx.get(f"http://127.0.0.1:{online}/health", timeout=2).status_code == 200,
            timeout=120,
            what="/health",
        )
        registry_server.wait_ready(
            lambda: not port_is_free(registry), timeout=120, what="gRPC port"
        )
        # Nothing of the world's stores in the transformer's environment: only the servers.
        env = {k: v for k, v in servers_env.items() if not k.startswith("DEX_FEAST_")}
        transformer = Child(
            "transformer-remote-feast",
            [
                sys.executable, "-m", "dex_serving.run", "transformer",
                f"--model={world.model}",
                f"--tracking-uri={world.tracking_uri}",
                f"--feature-repo={repo}",
                f"--feast-registry-server=127.0.0.1:{registry}",
                f"--feast-feature-server=http://127.0.0.1:{online}",
                f"--predictor_host={stack.predictor.removeprefix('http://')}",
                "--predictor-protocol=v2",
                f"--http_port={port}",
            ],
            log=logs / "transformer.log",
            env=env,
        )  # fmt: skip
        children.append(transformer)
        url = f"http://127.0.0.1:{port}"
        transformer.wait_ready(
            lambda: httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200,
            timeout=180,
            what="ready",
        )
        yield url
    finally:
        for child in reversed(children):
            child.stop()


def test_transformer_on_feast_servers_equals_offline_predict(
    remote_transformer: str, stack: ServingURLs, world: World
) -> None:
    import mlflow

    offline = pd.read_parquet(world.offline_path).sort_values("customer_id").head(200)
    mlflow.set_tracking_uri(world.tracking_uri)
    model = mlflow.sklearn.load_model(world.model)
    expected = model.predict_proba(offline[world.feature_columns].astype("float64"))[:, 1]
    keys = [int(k) for k in offline["customer_id"]]
    response = httpx.post(
        f"{remote_transformer}/v2/models/{stack.model_name}/infer",
        json={
            "inputs": [
                {"name": "customer_id", "datatype": "INT64", "shape": [len(keys)], "data": keys}
            ]
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs["customer_id"] == keys
    assert outputs["probability"] == pytest.approx(expected.tolist(), rel=1e-12, abs=1e-15)
