"""DEX on a real node, driven as a user drives it: ``kubectl`` and HTTP to Services.

The operator runs as a pod from ``kustomize/overlays/dev`` (``kubectl apply --server-side -k``),
with its ServiceAccount, ClusterRole and probes; its metrics are scraped through its Service.
A DexModel names version 1 of a model registered in an MLflow server that runs in the
cluster; the operator pod resolves it there and renders that version's InferenceService,
``<name>-v1``. KServe's own manager makes its Deployment, Service ``<name>-v1-predictor`` and
pod from the dex-serving image; requests reach it through that Service and through the
DexModel's HTTPRoute on the Gateway.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dexctl.polling import eventually

from .conftest import FEATURES, MODEL, NAMESPACE, SERVING_RESOURCES, DexCluster

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(name="node")]

SERVED = "classifier"  # the DexModel and the served model name
ISVC = f"{SERVED}-v1"  # version 1's InferenceService
MISSING_IMAGE = "localhost/dex/dex-serving:not-loaded"


def dexmodel(name: str, cluster: DexCluster, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexModel",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": MODEL, "version": "1", "registryUrl": cluster.mlflow_url},
            "serving": {
                "image": image,
                "deploymentMode": "Standard",
                "protocol": "v2",
                "resources": SERVING_RESOURCES,
            },
        },
    }


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), None)


def reporter(event: dict[str, Any]) -> str | None:
    return (event.get("source") or {}).get("component") or event.get("reportingComponent")


def is_true(obj: dict[str, Any], kind: str) -> bool:
    return (condition(obj, kind) or {}).get("status") == "True"


@pytest.fixture(scope="module")
def served(dex_cluster: DexCluster) -> dict[str, Any]:
    """The DexModel applied with kubectl, once its predictor pod serves (DexModel Ready)."""
    kubectl = dex_cluster.kubectl
    began = time.monotonic()
    kubectl.apply(dexmodel(SERVED, dex_cluster, dex_cluster.serving_image))

    def ready() -> dict[str, Any] | None:
        obj: dict[str, Any] = kubectl.json("dexmodel", SERVED, "-n", NAMESPACE)
        return obj if is_true(obj, "Ready") else None

    selector = f"serving.kserve.io/inferenceservice={ISVC}"
    try:
        obj = eventually(ready, timeout=300, interval=0.5, what=f"DexModel {SERVED} Ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{kubectl.diagnose(NAMESPACE, selector)}") from exc
    dex_cluster.timings["dexmodel_ready_s"] = round(time.monotonic() - began, 1)
    (pod,) = kubectl.json("pods", "-n", NAMESPACE, "-l", selector)["items"]
    dex_cluster.timings["predictor_pod_ready_s"] = _pod_ready_seconds(pod)
    return obj


def _pod_ready_seconds(pod: dict[str, Any]) -> float:
    """From the pod's creation to its Ready condition (the API's second resolution)."""
    from datetime import datetime

    created = datetime.fromisoformat(pod["metadata"]["creationTimestamp"])
    ready = condition(pod, "Ready")
    assert ready is not None
    assert ready["status"] == "True"
    return (datetime.fromisoformat(ready["lastTransitionTime"]) - created).total_seconds()


def test_operator_pod_from_the_overlay_reconciles_a_dexmodel_into_an_inferenceservice(
    dex_cluster: DexCluster, served: dict[str, Any]
) -> None:
    kubectl = dex_cluster.kubectl
    # The operator is the overlay's pod: its image, its ServiceAccount, Ready by its probe.
    (pod,) = kubectl.json("pods", "-n", "dex-system", "-l", "app.kubernetes.io/name=dex-operator")[
        "items"
    ]
    assert pod["spec"]["serviceAccountName"] == "dex-operator"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == dex_cluster.operator_image
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert is_true(pod, "Ready")
    assert all(c["restartCount"] == 0 for c in pod["status"]["containerStatuses"])

    status = served["status"]
    assert status["phase"] == "Promoted"
    assert status["stableVersion"] == "1"
    assert status["resolvedFrom"] == f"{MODEL}:1"

    isvc = kubectl.json("inferenceservice", ISVC, "-n", NAMESPACE)
    (owner,) = isvc["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("DexModel", SERVED, True)
    assert owner["uid"] == served["metadata"]["uid"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    (predictor,) = isvc["spec"]["predictor"]["containers"]
    assert predictor["image"] == dex_cluster.serving_image
    assert f"--model=models:/{MODEL}/1" in predictor["args"]
    assert f"--tracking-uri={dex_cluster.mlflow_url}" in predictor["args"]
    assert f"--served-name={SERVED}" in predictor["args"]
    # KServe made it Ready, from its own Deployment's availability.
    ready = next(c for c in isvc["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert isvc["status"]["deploymentMode"] == "Standard"

    events = kubectl.json(
        "events", "-n", NAMESPACE, f"--field-selector=involvedObject.name={SERVED}"
    )["items"]
    promoted = [e for e in events if e["reason"] == "Promoted"]
    assert promoted, [e["reason"] for e in events]
    assert reporter(promoted[0]) == "dex-operator"


def test_operator_metrics_are_scraped_through_its_service(
    dex_cluster: DexCluster, served: dict[str, Any]
) -> None:
    kubectl = dex_cluster.kubectl
    service = kubectl.json("service", "dex-operator-metrics", "-n", "dex-system")
    (port,) = service["spec"]["ports"]
    url = f"http://{service['spec']['clusterIP']}:{port['port']}/metrics"
    text = eventually(lambda: httpx.get(url, timeout=5).raise_for_status().text, timeout=30)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("dex_operator_")
    }
    assert samples[("dex_operator_reconcile_duration_seconds_count", ())] > 0
    assert samples[("dex_operator_rollouts_total", (("outcome", "promoted"),))] >= 1
    weight = ("dex_operator_canary_weight_percent", (("name", SERVED), ("namespace", NAMESPACE)))
    assert samples[weight] == 0


def test_predictor_pod_answers_v1_and_v2_through_its_service(
    dex_cluster: DexCluster, served: dict[str, Any]
) -> None:
    kubectl = dex_cluster.kubectl
    # The rendered container runs the dex-serving image as KServe would run it.
    (pod,) = kubectl.json(
        "pods", "-n", NAMESPACE, "-l", f"serving.kserve.io/inferenceservice={ISVC}"
    )["items"]
    assert pod["spec"]["containers"][0]["image"] == dex_cluster.serving_image
    url = f"http://{kubectl.cluster_ip(NAMESPACE, f'{ISVC}-predictor')}"
    expected = dex_cluster.expected

    v1 = eventually(
        lambda: httpx.post(
            f"{url}/v1/models/{SERVED}:predict", json={"instances": expected.rows}, timeout=30
        ).raise_for_status(),
        timeout=30,
        what="V1 predict through the Service",
    ).json()
    flat = [p for row in expected.probabilities for p in row]
    assert v1["predictions"] == expected.labels
    assert [p for row in v1["probabilities"] for p in row] == pytest.approx(flat, rel=1e-9)
    assert v1["model_version"] == "1"

    columns = list(zip(*expected.rows, strict=True))
    request = {
        "id": "e2e",
        "inputs": [
            {"name": name, "datatype": "FP64", "shape": [len(expected.rows)], "data": list(col)}
            for name, col in zip(FEATURES, columns, strict=True)
        ],
    }
    v2 = httpx.post(f"{url}/v2/models/{SERVED}/infer", json=request, timeout=30)
    assert v2.status_code == 200, v2.text
    body = v2.json()
    assert body["id"] == "e2e"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["data"] == expected.labels
    assert outputs["probabilities"]["data"] == pytest.approx(flat, rel=1e-9)


def test_serving_image_missing_on_the_node_is_reported_on_the_dexmodel(
    dex_cluster: DexCluster,
) -> None:
    """Bad input: the serving image is not on the node (nor in any registry). KServe's pod
    waits with ErrImagePull/ImagePullBackOff; the operator, watching the serving pods,
    reports it on the DexModel (condition ImagesAvailable=False and a Warning Event naming
    the image) within seconds, instead of the rollout only waiting for its progress
    deadline."""
    kubectl = dex_cluster.kubectl
    name = "missing-image"
    began = time.monotonic()
    kubectl.apply(dexmodel(name, dex_cluster, MISSING_IMAGE))

    def reported() -> dict[str, Any] | None:
        obj = kubectl.json("dexmodel", name, "-n", NAMESPACE)
        found = condition(obj, "ImagesAvailable")
        return found if found and found["status"] == "False" else None

    found = eventually(reported, timeout=90, interval=0.5, what="ImagesAvailable=False")
    seconds = round(time.monotonic() - began, 1)
    dex_cluster.timings["missing_image_reported_s"] = seconds
    assert found["reason"] == "ImagePullFailed"
    assert MISSING_IMAGE in found["message"]

    events = eventually(
        lambda: [
            e
            for e in kubectl.json(
                "events", "-n", NAMESPACE, f"--field-selector=involvedObject.name={name}"
            )["items"]
            if e["type"] == "Warning" and e["reason"] == "ImagePullFailed"
        ],
        timeout=30,
        what="Warning Event",
    )
    assert MISSING_IMAGE in events[0]["message"]
    assert events[0]["involvedObject"]["kind"] == "DexModel"
    assert reporter(events[0]) == "dex-operator"

    obj = kubectl.json("dexmodel", name, "-n", NAMESPACE)
    assert obj["status"]["phase"] == "Pending"
    assert not is_true(obj, "Ready")

    # Loading the image onto the node (`ctr images import`, what `kind load` does) is the
    # fix: the kubelet's retry starts the pod, the condition turns True, the model serves.
    subprocess.run(
        [
            "ctr", f"--address={dex_cluster.containerd_socket}", "--namespace=k8s.io",
            "images", "tag", dex_cluster.serving_image, MISSING_IMAGE,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip

    def recovered() -> dict[str, Any] | None:
        obj = kubectl.json("dexmodel", name, "-n", NAMESPACE)
        return obj if is_true(obj, "ImagesAvailable") and is_true(obj, "Ready") else None

    obj = eventually(recovered, timeout=180, interval=0.5, what="image loaded: served")
    assert obj["status"]["phase"] == "Promoted"


PLATFORM = {"dex-operator", "dex-feast", "dex-feast-redis", "mlflow", "dex-monitor"}
MONITORED = "churn-classifier"  # the registered model the overlay's monitor watches (@champion)
PLATFORM_CUSTOMERS = list(range(7001, 7021))


def test_the_dev_overlay_serves_feature_enriched_predictions_the_monitor_counts(
    dex_cluster: DexCluster,
) -> None:
    """The dev overlay, applied as a user applies it (the stack did: ``kubectl apply
    --server-side -k kustomize/overlays/dev``), is a working DEX: every Deployment Available;
    a model registered in its MLflow as the monitor's champion, served by a DexModel whose
    transformer reads the platform's Feast (online store in its Redis); a prediction through
    the transformer's Service equals the registered model on those features, and the
    platform's monitor counts the inference events the transformer sent it."""
    import random

    from .conftest import register_on_online_features, write_online

    kubectl = dex_cluster.kubectl
    deployments = kubectl.json("deployments", "-n", "dex-system")["items"]
    assert {d["metadata"]["name"] for d in deployments} == PLATFORM
    for deployment in deployments:
        assert is_true(deployment, "Available"), deployment["metadata"]["name"]

    rng = random.Random(5)
    n = len(PLATFORM_CUSTOMERS)
    profile = {
        "tenure_months": [rng.randint(1, 72) for _ in range(n)],
        "monthly_charges": [round(rng.uniform(10, 120), 2) for _ in range(n)],
        "plan_tier": [rng.randint(0, 2) for _ in range(n)],
        "contract_months": [rng.choice([1, 12, 24]) for _ in range(n)],
        "age": [rng.randint(18, 80) for _ in range(n)],
    }
    write_online(dex_cluster, "customer_profile", {"customer_id": PLATFORM_CUSTOMERS}, profile)
    service = "churn_profile_only"
    version, probabilities = register_on_online_features(
        dex_cluster, MONITORED, service, PLATFORM_CUSTOMERS, seed=3, alias="champion"
    )

    name = "platform"
    obj = dexmodel(name, dex_cluster, dex_cluster.serving_image)
    obj["spec"]["model"].update(name=MONITORED, version=version)
    obj["spec"]["features"] = {
        "featureService": service,
        "entityKey": "customer_id",
        "image": dex_cluster.serving_image,
    }
    # The monitor by its Service's DNS name, as the samples name it: pods resolve it.
    obj["spec"]["serving"]["logger"] = {"url": "http://dex-monitor.dex-system.svc:8080/events"}
    isvc = f"{name}-v{version}"
    try:
        kubectl.apply(obj)

        def ready() -> bool:
            return is_true(kubectl.json("dexmodel", name, "-n", NAMESPACE), "Ready")

        selector = f"serving.kserve.io/inferenceservice={isvc}"
        try:
            eventually(ready, timeout=300, interval=0.5, what=f"DexModel {name} Ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{kubectl.diagnose(NAMESPACE, selector)}") from exc

        transformer = kubectl.cluster_ip(NAMESPACE, f"{isvc}-transformer")
        customers = PLATFORM_CUSTOMERS[:5]
        body = {
            "inputs": [
                {
                    "name": "customer_id",
                    "datatype": "INT64",
                    "shape": [len(customers)],
                    "data": customers,
                }
            ]
        }
        # Ready pods come before kube-proxy routes their Service: the first request waits
        # for the route (a refused connection is "not yet").
        answer = eventually(
            lambda: httpx.post(
                f"http://{transformer}/v2/models/{name}/infer", json=body, timeout=30
            ),
            timeout=60,
            interval=0.5,
            what=f"the {isvc}-transformer Service routes",
        )
        assert answer.status_code == 200, answer.text
        got = next(o for o in answer.json()["outputs"] if o["name"] == "probability")["data"]
        assert got == pytest.approx(probabilities[: len(customers)], abs=1e-9)

        monitor = kubectl.cluster_ip("dex-system", "dex-monitor")

        def counted() -> dict[str, int] | None:
            counts: dict[str, int] = httpx.get(
                f"http://{monitor}:8080/events/count", timeout=5
            ).json()
            return counts if counts["rows"] >= len(customers) else None

        counts = eventually(counted, timeout=120, what="the monitor storing the inference")
        assert counts["events"] >= 2  # the request and the response of the inference
        ready_monitor = httpx.get(f"http://{monitor}:8080/readyz", timeout=5).json()
        assert (ready_monitor["model"], ready_monitor["version"]) == (MONITORED, version)
    finally:
        kubectl("delete", "dexmodel", name, "-n", NAMESPACE, "--timeout=120s", check=False)


def test_argo_cd_syncs_the_dev_overlay_from_git_to_healthy_and_self_heals_it(
    dex_cluster: DexCluster, tmp_path: Path
) -> None:
    """The real Argo CD (``make argocd``) tracks this checkout's deployment tree, committed
    to a local git repository, at ``kustomize/overlays/dev`` with the dev Application's sync
    policy and ignoreDifferences. It takes over the platform installed above (server-side
    apply: the same fields, another manager) without restarting it: Synced, and Healthy from
    Argo CD's own health of every Deployment, Service and DexModel CRD. A hand edit of a
    managed field (the Redis NetworkPolicy's port) is reverted by self-heal."""
    import os

    import yaml

    from dex_testing import SOURCE_ROOT
    from dex_testing.argocd import IN_CLUSTER, ArgoCD, MissingArgoCDError, find_argocd

    try:
        find_argocd()
    except MissingArgoCDError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    kubectl = dex_cluster.kubectl
    listed = subprocess.run(
        ["git", "-C", str(SOURCE_ROOT), "ls-files", "-co", "--exclude-standard",
         "manifests", "kustomize"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    files = {path: (SOURCE_ROOT / path).read_text() for path in listed}
    dev = yaml.safe_load((SOURCE_ROOT / "kustomize/argocd/applications/dev.yaml").read_text())
    pods_before = {p["metadata"]["name"] for p in kubectl.json("pods", "-n", "dex-system")["items"]}
    with ArgoCD(kubectl.kubeconfig, tmp_path / "argocd") as argo:
        revision = argo.commit("dex", files, "DEX's deployment tree")
        app = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "dex-dev", "namespace": "argocd"},
            "spec": {
                "project": "default",
                "source": {
                    "repoURL": argo.repo_url("dex"),
                    "targetRevision": "main",
                    "path": dev["spec"]["source"]["path"],
                },
                "destination": {"server": IN_CLUSTER, "namespace": "dex-system"},
                "syncPolicy": dev["spec"]["syncPolicy"],
                "ignoreDifferences": dev["spec"]["ignoreDifferences"],
            },
        }
        began = time.monotonic()
        kubectl.apply(app)

        def status() -> dict[str, Any]:
            got: dict[str, Any] = kubectl.json("application", "dex-dev", "-n", "argocd")
            return got.get("status") or {}

        def healthy() -> dict[str, Any] | None:
            now = status()
            sync, health = now.get("sync", {}), now.get("health", {})
            if sync.get("status") == "Synced" and health.get("status") == "Healthy":
                return now
            return None

        try:
            synced = eventually(healthy, timeout=180, what="Application dex-dev Synced, Healthy")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{json.dumps(status(), indent=1)[-6000:]}") from exc
        dex_cluster.timings["argocd_synced_healthy_s"] = round(time.monotonic() - began, 1)
        assert synced["sync"]["revision"] == revision
        kinds = {(r["kind"], r["name"]) for r in synced["resources"]}
        for name in PLATFORM:
            assert ("Deployment", name) in kinds, name
        for resource in synced["resources"]:
            assert resource["status"] == "Synced", resource
            if resource["kind"] == "Deployment":
                assert resource["health"]["status"] == "Healthy", resource
        # Taking over changed no pod template: nothing restarted.
        pods_after = {
            p["metadata"]["name"] for p in kubectl.json("pods", "-n", "dex-system")["items"]
        }
        assert pods_after == pods_before

        edited = kubectl(
            "patch", "networkpolicy", "dex-feast-redis", "-n", "dex-system", "--type=json",
            "-p", '[{"op": "replace", "path": "/spec/ingress/0/ports/0/port", "value": 6380}]',
            "-o", "json",
        ).stdout  # fmt: skip
        assert json.loads(edited)["spec"]["ingress"][0]["ports"][0]["port"] == 6380

        def reverted() -> bool:
            policy = kubectl.json("networkpolicy", "dex-feast-redis", "-n", "dex-system")
            return bool(policy["spec"]["ingress"][0]["ports"][0]["port"] == "redis")

        began = time.monotonic()
        eventually(reverted, timeout=120, what="self-heal reverting the NetworkPolicy edit")
        dex_cluster.timings["argocd_self_heal_s"] = round(time.monotonic() - began, 1)
        kubectl("delete", "application", "dex-dev", "-n", "argocd", "--wait=true", "--timeout=60s")
