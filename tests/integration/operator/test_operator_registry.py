"""Registry resolution over MLflow's REST API against a real ``mlflow server`` (SQLite +
local artifacts): version, alias, errors, the feature-contract check, and one operator run
following an alias that moves. One module, one MLflow server (~30 s start), kept to the few
tests that need it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opkit import DriftEndpoint, apply, final_history, get_json, mlflow_post

from dex.contract import TAG_FEATURE_SERVICE
from dex_operator.crd.models import ModelSource
from dex_operator.registry import MlflowRegistry, RegistryError
from dex_testing.devcluster import eventually
from dex_testing.kserve_standin import KServeStandIn
from dex_testing.mlflow_server import mlflow_server
from dexctl.processes import free_ports

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

MODEL = "churn-classifier"


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture(scope="module")
def registered(mlflow_url: str) -> dict[str, str]:
    """Two versions of churn-classifier with the feature-contract tag, alias champion -> 1.
    Registered through MLflow's REST API, as the training pipeline's client would."""
    mlflow_post(mlflow_url, "registered-models/create", {"name": MODEL})
    sources = {}
    for v in ("1", "2"):
        source = f"s3://dex-models/churn/{v}"
        mv = mlflow_post(
            mlflow_url,
            "model-versions/create",
            {
                "name": MODEL,
                "source": source,
                "tags": [{"key": TAG_FEATURE_SERVICE, "value": "churn_v1"}],
            },
        )["model_version"]
        sources[mv["version"]] = source
    mlflow_post(
        mlflow_url, "registered-models/alias", {"name": MODEL, "alias": "champion", "version": "1"}
    )
    return sources


def test_resolve_version_and_alias(mlflow_url: str, registered: dict[str, str]) -> None:
    registry = MlflowRegistry(mlflow_url)
    v2 = registry.resolve(ModelSource(name=MODEL, version="2"))
    assert v2.version == "2"
    assert v2.storage_uri == registered["2"]
    assert v2.tags[TAG_FEATURE_SERVICE] == "churn_v1"
    champion = registry.resolve(ModelSource(name=MODEL, alias="champion"))
    assert champion.version == "1"
    assert champion.storage_uri == registered["1"]


@pytest.mark.parametrize(
    "source",
    [
        ModelSource(name=MODEL, version="99"),
        ModelSource(name=MODEL, alias="nope"),
        ModelSource(name="no-such-model", version="1"),
    ],
)
def test_unknown_sources_raise(
    mlflow_url: str, registered: dict[str, str], source: ModelSource
) -> None:
    with pytest.raises(RegistryError, match="HTTP"):
        MlflowRegistry(mlflow_url).resolve(source)


def test_unreachable_registry_raises() -> None:
    (port,) = free_ports(1)
    with pytest.raises(RegistryError, match="unreachable"):
        MlflowRegistry(f"http://127.0.0.1:{port}", timeout=2).by_version(MODEL, "1")


def test_operator_follows_alias_and_checks_feature_contract(
    kubeconfig: Path,
    namespace: str,
    mlflow_url: str,
    registered: dict[str, str],
    operator_factory: object,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
) -> None:
    operator_factory(DEX_MLFLOW_URL=mlflow_url)  # type: ignore[operator]
    # The served name (the DexModel's), as the monitor labels what its transformer saw.
    drift.set("champ", "2", 0.01)
    obj = {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexModel",
        "metadata": {"name": "champ", "namespace": namespace},
        "spec": {
            "model": {"name": MODEL, "alias": "champion"},
            "features": {"featureService": "churn_v1", "entityKey": "customer_id"},
            "serving": {"deploymentMode": "Knative"},
            "rollout": {
                "steps": [50],
                "interval": "1s",
                "analysis": [
                    {"name": "drift", "metric": "drift", "provider": "dexDrift", "threshold": 0.3}
                ],
            },
        },
    }
    assert apply(kubeconfig, obj).returncode == 0

    def status(name: str = "champ") -> dict[str, Any]:
        return dict(get_json(kubeconfig, "dm", name, "-n", namespace).get("status") or {})

    eventually(lambda: status().get("phase") == "Promoted", timeout=30, what="v1 promoted")
    assert status()["stableVersion"] == "1"
    isvc = get_json(kubeconfig, "isvc", "champ", "-n", namespace)
    # The serving containers get the pinned version, never the alias that may move under them.
    (predictor,) = isvc["spec"]["predictor"]["containers"]
    assert f"--model=models:/{MODEL}/1" in predictor["args"]
    assert f"--tracking-uri={mlflow_url}" in predictor["args"]
    (transformer,) = isvc["spec"]["transformer"]["containers"]
    assert transformer["args"][:2] == ["transformer", f"--model=models:/{MODEL}/1"]
    assert f"--predictor_host=champ-predictor.{namespace}" in transformer["args"]

    # The promotion pipeline moves the alias; the operator's registry poll notices.
    mlflow_post(
        mlflow_url, "registered-models/alias", {"name": MODEL, "alias": "champion", "version": "2"}
    )
    eventually(
        lambda: status().get("stableVersion") == "2" and status()["phase"] == "Promoted",
        timeout=40,
        what="alias move rolled out",
    )
    assert final_history(kserve, namespace, "champ") == [None, 0, 50, None]

    # A model trained on another feature service is refused, not served.
    mismatch = {
        **obj,
        "metadata": {"name": "mismatch", "namespace": namespace},
        "spec": {
            **obj["spec"],
            "model": {"name": MODEL, "version": "1"},
            "features": {"featureService": "churn_v2", "entityKey": "customer_id"},
        },
    }
    assert apply(kubeconfig, mismatch).returncode == 0
    eventually(
        lambda: status("mismatch").get("phase") == "Failed",
        timeout=30,
        what="feature mismatch reported",
    )
    ready = next(c for c in status("mismatch")["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "FeatureServiceMismatch"
    assert kubectl_absent(kubeconfig, namespace, "mismatch")


def kubectl_absent(kubeconfig: Path, namespace: str, name: str) -> bool:
    from opkit import kubectl

    return kubectl(kubeconfig, "get", "isvc", name, "-n", namespace, check=False).returncode != 0
