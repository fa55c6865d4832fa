"""The drift gate fed by the real DEX monitor (issue 15): a rollout promoted on the drift share
the monitor computed from real traffic, and one rolled back on it.

Real: the operator process, the API server, MLflow's server over the serving world's registry,
predictor + transformer + monitor processes serving registered versions with Feast features.
Stood in: KServe (``KServeStandIn`` reports the InferenceService Ready); the traffic a canary
would receive is sent to a transformer serving that version, which reports to the shared
monitor exactly as it does in a cluster (served name = the DexModel's, version = the
registry's). The DexModel's name differs from the registered model's on purpose: the gate
must query the served name, which is what the monitor labels its series with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opkit import apply, condition, events_for, get_json, mlflow_post, sample_value

from dex.metrics import DRIFT_SHARE
from dex_serving.settings import DriftSettings
from dex_testing.kserve_standin import KServeStandIn
from dex_testing.mlflow_server import mlflow_server
from dex_testing.operator_process import OperatorProcess
from dex_testing.serving_world import (
    MODEL_NAME,
    World,
    build_in_subprocess,
    register_copies_in_subprocess,
)
from dexctl.local_serving import (
    LocalServing,
    LocalServingConfig,
    ServingURLs,
    compute_drift,
    predict,
    wait_for_rows,
)
from dexctl.polling import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

SERVED = "churn"  # the DexModel, its InferenceService and the served name
THRESHOLD = 0.3
ROWS = 300


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_in_subprocess(tmp_path_factory.mktemp("drift-gate-world"))


@pytest.fixture(scope="module")
def copies(world: World) -> list[str]:
    return register_copies_in_subprocess(world, 2)


@pytest.fixture(scope="module")
def mlflow_url(world: World) -> Iterator[str]:
    with mlflow_server(world.root / "mlflow-server", world.tracking_uri) as url:
        yield url


def _config(world: World, version: str, **fields: Any) -> LocalServingConfig:
    return LocalServingConfig(
        model=f"models:/{MODEL_NAME}/{version}",
        served_name=SERVED,
        tracking_uri=world.tracking_uri,
        feature_repo=world.feature_repo,
        state_dir=world.root / f"serving-{version}",
        env=world.env,
        log_file=world.root / f"serving-{version}.log",
        **fields,
    )


@pytest.fixture(scope="module")
def monitor(world: World) -> Iterator[ServingURLs]:
    """The one monitor every served version reports to (it serves version 1 too)."""
    drift = DriftSettings(window=ROWS, min_rows=ROWS // 2, interval_s=3600, trigger_cooldown_s=0)
    with LocalServing(_config(world, "1", drift=drift)) as urls:
        yield urls


def _traffic(world: World, monitor: ServingURLs, version: str, keys: list[int]) -> float:
    """Serve ``version`` under the served name, send ``keys`` through its transformer, and
    return the drift share the monitor then computes for it."""
    assert monitor.monitor is not None
    before = int(httpx.get(f"{monitor.monitor}/events/count", timeout=5).json()["rows"])
    config = _config(world, version, monitor=False, monitor_url=monitor.monitor)
    with LocalServing(config) as urls:
        assert len(predict(urls, keys)) == len(keys)
    # Stopping the transformer flushes its events; the monitor stores them.
    wait_for_rows(monitor, before + len(keys), timeout_s=60)
    (result,) = [r for r in compute_drift(monitor) if r["version"] == version]
    assert result["model"] == SERVED
    assert result["rows"] == len(keys)
    return float(str(result["drift_share"]))


def _move_champion(mlflow_url: str, version: str) -> None:
    mlflow_post(
        mlflow_url,
        "registered-models/alias",
        {"name": MODEL_NAME, "alias": "champion", "version": version},
    )


def test_rollouts_gated_by_the_drift_the_monitor_measured(
    kubeconfig: Path,
    namespace: str,
    kserve: KServeStandIn,
    operator_factory: Callable[..., OperatorProcess],
    world: World,
    copies: list[str],
    mlflow_url: str,
    monitor: ServingURLs,
) -> None:
    calm_version, drifted_version = copies
    assert monitor.monitor is not None
    operator_factory(DEX_MLFLOW_URL=mlflow_url, DEX_MONITOR_URL=monitor.monitor)
    obj = {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexModel",
        "metadata": {"name": SERVED, "namespace": namespace},
        "spec": {
            "model": {"name": MODEL_NAME, "alias": "champion"},
            "features": {"featureService": "churn_v1", "entityKey": "customer_id"},
            "serving": {"deploymentMode": "Standard"},
            "rollout": {
                "steps": [50],
                "interval": "1s",
                "failureLimit": 1,
                "analysis": [
                    {
                        "name": "drift",
                        "metric": "drift",
                        "provider": "dexDrift",
                        "threshold": THRESHOLD,
                    }
                ],
            },
        },
    }
    assert apply(kubeconfig, obj).returncode == 0

    def status() -> dict[str, Any]:
        return dict(get_json(kubeconfig, "dm", SERVED, "-n", namespace).get("status") or {})

    eventually(lambda: status().get("phase") == "Promoted", timeout=60, what="v1 promoted")

    # A version whose traffic looks like its training data: the gate passes on that share.
    calm = _traffic(world, monitor, calm_version, world.normal_ids[:ROWS])
    assert calm < THRESHOLD
    labels = {"model": SERVED, "version": calm_version}
    assert sample_value(f"{monitor.monitor}/metrics", DRIFT_SHARE, labels) == calm
    _move_champion(mlflow_url, calm_version)
    eventually(
        lambda: status().get("stableVersion") == calm_version and status()["phase"] == "Promoted",
        timeout=60,
        what=f"version {calm_version} promoted on the monitor's drift share",
    )
    (gate,) = status()["lastAnalysis"]
    assert (gate["passed"], gate["value"]) == (True, pytest.approx(calm, abs=1e-12))

    # A version whose traffic drifted: rolled back, the message quoting the measured share.
    shifted = _traffic(world, monitor, drifted_version, world.drifted_ids[:ROWS])
    assert shifted > THRESHOLD
    _move_champion(mlflow_url, drifted_version)
    eventually(
        lambda: status().get("phase") == "RolledBack",
        timeout=60,
        what="drifted version rolled back",
    )
    dm = get_json(kubeconfig, "dm", SERVED, "-n", namespace)
    assert dm["status"]["stableVersion"] == calm_version
    (gate,) = dm["status"]["lastAnalysis"]
    assert (gate["passed"], gate["value"]) == (False, pytest.approx(shifted, abs=1e-12))
    degraded = condition(dm, "Degraded")
    assert degraded["reason"] == "AnalysisFailed"
    quoted = f"drift (drift) = {shifted:.4g}, threshold {THRESHOLD:g}"
    assert quoted in degraded["message"]
    rolled = [e for e in events_for(kubeconfig, namespace, SERVED) if e["reason"] == "RolledBack"]
    assert len(rolled) == 1
    assert quoted in rolled[0]["message"]
