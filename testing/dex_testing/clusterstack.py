"""DEX on a real node with the real KServe and a real Gateway: the stack the cluster e2e tier
and ``make bench`` run on, brought up as a user installs it.

``DexStack`` starts the control plane and a real node (containerd, kubelet, kube-proxy) with
DEX's three images and the dev Redis (``make images``) imported, which the node also tags
``localhost/dex/<image>:dev``. On it:

* KServe, for real: its v0.20 manager (built from its Go module, ``make kserve``) run from
  the host against the cluster, with its CRDs, its ``inferenceservice-config`` (Standard
  mode) and its mutating and validating webhooks (``dex_testing.kserve_manager``). It makes
  each InferenceService's Deployments, Services and pods on the node.
* A Gateway API data plane, for real: Traefik (``make gateway``) run from the host, with the
  Gateway ``dex-system/dex-gateway`` the operator's HTTPRoutes attach to
  (``dex_testing.gateway``); requests to its entrypoint reach the pods by their IPs.
* DEX, the whole platform: ``kubectl apply --server-side -k kustomize/overlays/dev``, so the
  operator, the feature store (Feast over Redis), the MLflow server (SQLite on an emptyDir,
  artifacts proxied by the server) and the drift monitor run as pods with their
  ServiceAccount, probes and Services; a small scikit-learn model is registered into that
  MLflow from the host through its Service with the MLflow client.

Everything else goes through ``kubectl`` and HTTP to Services' ClusterIPs (routed by
kube-proxy from the host) and the Gateway's entrypoint. Leaving the ``with`` block stops it
all; the caller checks the machine against a snapshot taken before.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from dex_testing import SOURCE_ROOT
from dex_testing.crds import wait_established
from dex_testing.devcluster import (
    ControlPlane,
    ControlPlaneConfig,
    NodeConfig,
    check_tools,
    ensure_node_tools,
    find_assets,
)
from dex_testing.devcluster.node import DEFAULT_IMAGES_DIR
from dex_testing.gateway import Gateway
from dex_testing.kserve_manager import KServeManager

BUILD = SOURCE_ROOT / "tools" / "images" / "build.sh"
IMAGES = ("dex-operator", "dex-serving", "dex-components", "redis")
OVERLAY = SOURCE_ROOT / "kustomize" / "overlays" / "dev"
PLATFORM_NAMESPACE = "dex-system"
# What the overlay installs, in the order they are waited for (MLflow first: the rest needs it
# least, and it is slowest to start).
PLATFORM_DEPLOYMENTS = ("mlflow", "dex-feast-redis", "dex-feast", "dex-monitor", "dex-operator")
NAMESPACE = "dex-e2e"
MLFLOW_PORT = 5000
MODEL = "e2e-classifier"
FEATURES = ["tenure", "monthly_charges", "support_calls", "usage_gb"]
# Every serving container says what it needs: KServe gives one that does not 1 CPU and 2Gi,
# and the dev node has 2 CPUs in all.
SERVING_RESOURCES = {
    "requests": {"cpu": "20m", "memory": "200Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}


class StackUnavailableError(RuntimeError):
    """This machine cannot run the stack (not root, no checkout of the image builds)."""


@dataclass
class Kubectl:
    """kubectl against the test cluster, as a user runs it."""

    kubeconfig: Path

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json").stdout)

    def apply(self, *objects: dict[str, Any]) -> None:
        document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self("apply", "--server-side", "-f", "-", stdin=json.dumps(document))

    def cluster_ip(self, namespace: str, service: str) -> str:
        return str(self.json("service", service, "-n", namespace)["spec"]["clusterIP"])

    def diagnose(self, namespace: str, selector: str) -> str:
        """What a user would look at when something does not come up: the objects, the
        pods' descriptions and logs, the operator's log."""
        steps = [
            ("get", "dexmodels,inferenceservices,deployments,pods", "-n", namespace, "-o", "yaml"),
            ("describe", "pods", "-n", namespace, "-l", selector),
            ("logs", "-n", namespace, "-l", selector, "--all-containers", "--tail=80"),
            ("logs", "-n", "dex-system", "deployment/dex-operator", "--tail=80"),
        ]
        out = []
        for args in steps:
            result = self(*args, check=False)
            out.append(
                f"$ kubectl {' '.join(args)}\n{result.stdout[-6000:]}{result.stderr[-2000:]}"
            )
        return "\n".join(out)


@dataclass
class Expected:
    """What the registered model itself answers for a few rows (computed on the host)."""

    version: int
    rows: list[list[float]]
    labels: list[int]
    probabilities: list[list[float]]


@dataclass
class DexCluster:
    kubectl: Kubectl
    gateway_url: str  # Traefik's entrypoint on 127.0.0.1 (send Host: <name>-<ns>.example.com)
    mlflow_url: str  # the MLflow Service, by ClusterIP
    expected: Expected
    serving_image: str
    operator_image: str
    containerd_socket: Path  # the node's containerd (where `ctr images import` loads images)
    node_ip: str  # where host processes listen for pods (KFP's backend: dex_testing.kfp_runtime)
    # The platform's Feast (manifests/feast) by ClusterIP: registry gRPC host:port, online URL.
    feast_registry_server: str
    feast_feature_server: str
    timings: dict[str, float] = field(default_factory=dict)


def _ensure_images() -> list[Path]:
    if not BUILD.exists():
        raise StackUnavailableError(f"{BUILD} (make images) is not in this checkout")
    # A no-op (seconds) when the tree is unchanged; `make test` has run `make images` already.
    subprocess.run(["bash", str(BUILD), *IMAGES], check=True)
    archives = [DEFAULT_IMAGES_DIR / f"{name}.oci.tar" for name in IMAGES]
    for archive in archives:
        assert archive.is_file(), f"{BUILD} left no {archive}"
    return archives


def _install_dex(kubectl: Kubectl, timings: dict[str, float]) -> str:
    """``kubectl apply --server-side -k kustomize/overlays/dev``, as a user installs DEX;
    waits until every Deployment of the platform is Available (each pod Ready: its readiness
    probe answered) and returns the MLflow Service's URL by ClusterIP (the host has no
    cluster DNS)."""
    began = time.monotonic()
    kubectl("apply", "--server-side", "-k", str(OVERLAY))
    wait_established(
        kubectl.kubeconfig, ["dexmodels.dex.dataenginex.io", "dexpipelines.dex.dataenginex.io"]
    )
    for deployment in PLATFORM_DEPLOYMENTS:
        kubectl(
            "rollout", "status", f"deployment/{deployment}", "-n", PLATFORM_NAMESPACE,
            "--timeout=300s", timeout=320,
        )  # fmt: skip
        timings[f"{deployment}_ready_s"] = round(time.monotonic() - began, 1)
    cluster_ip = kubectl.cluster_ip(PLATFORM_NAMESPACE, "mlflow")
    return f"http://{cluster_ip}:{MLFLOW_PORT}"


# Run on the host by the MLflow client, in its own process (MLflow's tracking URI is
# process-global): train, register version 1 through the Service, print probe predictions.
REGISTER = """
import json, sys
import mlflow, numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression

url, name, features = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
rng = np.random.default_rng(int(sys.argv[4]) if sys.argv[4] else None)
x = pd.DataFrame(rng.normal(size=(200, len(features))), columns=features)
y = (x[features[0]] - x[features[2]] + 0.3 * rng.normal(size=200) > 0).astype(int)
model = LogisticRegression().fit(x, y)
mlflow.set_tracking_uri(url)
mlflow.set_registry_uri(url)
mlflow.set_experiment("e2e-cluster")
with mlflow.start_run():
    mlflow.sklearn.log_model(
        model, name="model", registered_model_name=name, pip_requirements=["scikit-learn"],
        serialization_format="cloudpickle",  # as DEX trains (no skops in dex-serving)
    )
versions = mlflow.MlflowClient().search_model_versions(f"name='{name}'")
probe = x.head(5)
print(json.dumps({
    "version": max(int(v.version) for v in versions),
    "rows": probe.to_numpy().tolist(),
    "labels": model.predict(probe).tolist(),
    "probabilities": model.predict_proba(probe).tolist(),
}))
"""


REGISTER_WITH_CONTRACT = """
import json, sys
import mlflow, numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

url, name, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
job = json.load(sys.stdin)
columns, tags = job["columns"], job["tags"]
rng = np.random.default_rng(seed)
# Trained around the probe rows' own scales (the online features), regularized, so its
# probabilities stay away from 0 and 1 and tell two models apart.
rows = np.asarray(job["rows"], dtype=float)
x = pd.DataFrame(
    np.repeat(rows, 8, axis=0) * rng.normal(1.0, 0.1, size=(8 * len(rows), len(columns))),
    columns=columns,
)
z = ((x - x.mean()) / (x.std() + 1e-9)).to_numpy()
y = (z @ rng.normal(size=len(columns)) + 0.5 * rng.normal(size=len(x)) > 0).astype(int)
model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1)).fit(x, y)
mlflow.set_tracking_uri(url)
mlflow.set_registry_uri(url)
mlflow.set_experiment("e2e-cluster")
with mlflow.start_run():
    info = mlflow.sklearn.log_model(
        model, name="model", registered_model_name=name, pip_requirements=["scikit-learn"],
        serialization_format="cloudpickle",
    )
version = str(info.registered_model_version)
client = mlflow.MlflowClient()
for key, value in tags.items():
    client.set_model_version_tag(name, version, key, value)
if job.get("alias"):
    client.set_registered_model_alias(name, job["alias"], version)
probes = pd.DataFrame(job["rows"], columns=columns)
print(json.dumps({"version": version, "probabilities": model.predict_proba(probes)[:, 1].tolist()}))
"""


def register_with_contract(
    mlflow_url: str,
    name: str,
    tags: dict[str, str],
    columns: list[str],
    rows: list[list[float]],
    seed: int,
    alias: str | None = None,
) -> tuple[str, list[float]]:
    """A version of ``name`` trained on ``columns``, carrying a feature contract (``tags``, the
    MLflow version tags DEX training writes), under ``alias`` if given; its version and
    positive-class probabilities for ``rows``, as the registered model computes them."""
    job = {"columns": columns, "tags": tags, "rows": rows, "alias": alias}
    out = _run_script(REGISTER_WITH_CONTRACT, [mlflow_url, name, str(seed)], stdin=json.dumps(job))
    return str(out["version"]), [float(p) for p in out["probabilities"]]


def write_online(
    cluster: DexCluster, view: str, entities: dict[str, list[int]], columns: dict[str, list[Any]]
) -> None:
    """Rows into the platform's online store through Feast's feature server, as
    materialization does (``entities``: the join key's values)."""
    count = len(next(iter(entities.values())))
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    stamps = {"event_timestamp": [now] * count, "created_timestamp": [now] * count}
    body = {"feature_view_name": view, "df": {**entities, **columns, **stamps}}
    httpx.post(
        f"{cluster.feast_feature_server}/write-to-online-store", json=body, timeout=60
    ).raise_for_status()


def register_on_online_features(
    cluster: DexCluster,
    model: str,
    service: str,
    customers: list[int],
    seed: int,
    alias: str | None = None,
) -> tuple[str, list[float]]:
    """A version of ``model`` trained on feature service ``service`` and carrying its feature
    contract, fitted around ``customers``' online features as the platform's Feast serves them
    (what a transformer will read); its version and each customer's probability."""
    from dex.contract import FeatureContract
    from dex.features import feature_refs, open_remote_store

    store = open_remote_store(
        SOURCE_ROOT / "feature_repo", cluster.feast_registry_server, cluster.feast_feature_server
    )
    refs = feature_refs(store, service)
    columns = [ref.split(":", 1)[1] for ref in refs]
    online = store.get_online_features(
        features=refs, entity_rows=[{"customer_id": c} for c in customers]
    ).to_dict()
    rows = [[float(online[c][i]) for c in columns] for i in range(len(customers))]
    contract = FeatureContract(
        feature_service=service,
        feature_refs=refs,
        feature_columns=columns,
        entity_key="customer_id",
        label="churned",
    )
    return register_with_contract(
        cluster.mlflow_url, model, contract.to_tags(), columns, rows, seed, alias=alias
    )


def _register_model(mlflow_url: str) -> Expected:
    return Expected(**_run_registration(mlflow_url, seed=7))


def register_version(mlflow_url: str) -> str:
    """One more version of the model (another training run); its version number."""
    return str(_run_registration(mlflow_url, seed=None)["version"])


def _run_registration(mlflow_url: str, seed: int | None) -> dict[str, Any]:
    return _run_script(REGISTER, [mlflow_url, MODEL, ",".join(FEATURES), str(seed or "")])


def _run_script(script: str, args: list[str], stdin: str | None = None) -> dict[str, Any]:
    """A registration script in a fresh interpreter; the JSON of its last output line."""
    # No MLFLOW_* of this process: mlflow.set_registry_uri in an earlier test of the same
    # worker exports MLFLOW_REGISTRY_URI, and the model would be registered there instead.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


@contextlib.contextmanager
def dex_stack(work: Path) -> Iterator[DexCluster]:
    """The whole stack in ``work``; stopped (host processes first, then the cluster) on exit."""
    if os.geteuid() != 0:
        raise StackUnavailableError("a real node needs root (mounts, links, iptables, cgroups)")
    ensure_node_tools()
    assets = find_assets(build_if_missing=True)
    check_tools(assets)
    archives = _ensure_images()
    config = ControlPlaneConfig(
        node=NodeConfig(image_archives=archives), work_dir=work, start_timeout=180
    )
    plane = ControlPlane(config, assets)
    timings: dict[str, float] = {}
    # The host processes (KServe's manager, Traefik) stop before the cluster does.
    with contextlib.ExitStack() as stack:
        stack.callback(plane.stop)
        began = time.monotonic()
        state = plane.start()
        timings["cluster_up_s"] = round(time.monotonic() - began, 1)
        assert state.node is not None
        images = state.node.images
        for name in IMAGES:
            assert f"localhost/dex/{name}:dev" in images, images
        kubectl = Kubectl(state.kubeconfig)
        began = time.monotonic()
        stack.enter_context(KServeManager(state.kubeconfig, work / "kserve"))
        timings["kserve_ready_s"] = round(time.monotonic() - began, 1)
        began = time.monotonic()
        gateway = stack.enter_context(Gateway(state.kubeconfig, work / "gateway"))
        timings["gateway_ready_s"] = round(time.monotonic() - began, 1)
        mlflow_url = _install_dex(kubectl, timings)
        feast_ip = kubectl.cluster_ip(PLATFORM_NAMESPACE, "dex-feast")
        kubectl("create", "namespace", NAMESPACE)
        began = time.monotonic()
        expected = _register_model(mlflow_url)
        timings["model_registered_s"] = round(time.monotonic() - began, 1)
        yield DexCluster(
            kubectl=kubectl,
            gateway_url=gateway.url,
            mlflow_url=mlflow_url,
            expected=expected,
            serving_image="localhost/dex/dex-serving:dev",
            operator_image="localhost/dex/dex-operator:dev",
            containerd_socket=state.node.containerd_socket,
            node_ip=state.node.ip,
            feast_registry_server=f"{feast_ip}:6570",
            feast_feature_server=f"http://{feast_ip}:6566",
            timings=timings,
        )
