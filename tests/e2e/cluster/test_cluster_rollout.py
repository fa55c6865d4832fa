"""Canary rollouts on the real stack, driven as a user drives them (kubectl, HTTP).

KServe's own manager (its webhooks too) makes each version's pods from the InferenceServices
the operator renders, one per model version; Traefik, a real Gateway API data plane, routes
requests by the weights of the DexModel's HTTPRoute. The drift gate reads a gauge the test
sets (a small pod speaking the DEX monitor's ``/metrics``), so each step passes or fails on
the test's word. Every request is an Open Inference Protocol call through the Gateway; its
answer's ``model_version`` says which version's pods served it.

Most DexModels here have no ``spec.features``: the route's backends are the versions'
predictors. The feature-enriched rollout sends entity keys through each version's own
transformer, which reads that version's feature service from the platform's Feast (the
registry server and online feature server of manifests/feast); the test writes the online
features as a materialization job would, through the feature server's API.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client, config, watch

from dex.metrics import DRIFT_SHARE, MODEL_LABELS
from dexctl.polling import eventually

from .conftest import (
    FEATURES,
    MODEL,
    NAMESPACE,
    SERVING_RESOURCES,
    DexCluster,
    register_on_online_features,
    register_version,
    write_online,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(name="node")]

REQUESTS_PER_STEP = 1000
TOLERANCE = 5  # percentage points
ISVC_LABEL = "serving.kserve.io/inferenceservice"

# A pod answering /metrics with the drift share the test PUTs (the DEX monitor's series).
GAUGE = """
import http.server, json, sys
name, labels = sys.argv[1], sys.argv[2].split(",")
values = {}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        lines = [f"# TYPE {name} gauge"] + [
            name + "{" + ",".join(f'{k}="{v}"' for k, v in zip(labels, key)) + "} " + str(x)
            for key, x in values.items()
        ]
        self.answer(200, "\\n".join(lines) + "\\n")
    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = tuple(body[k] for k in labels)
        if body.get("value") is None:
            values.pop(key, None)
        else:
            values[key] = float(body["value"])
        self.answer(200, "ok\\n")
    def answer(self, code, text):
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


class DriftGauge:
    def __init__(self, url: str) -> None:
        self.url = url

    def set(self, model: str, version: str, value: float | None) -> None:
        body = dict(zip(MODEL_LABELS, (model, version), strict=True))
        httpx.put(self.url, json={**body, "value": value}, timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def gauge(dex_cluster: DexCluster) -> DriftGauge:
    """The gauge pod and Service; the operator Deployment pointed at it (``kubectl set env``,
    a rollout of the operator as a user would make it)."""
    kubectl = dex_cluster.kubectl
    labels = {"app": "drift-gauge"}
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "drift-gauge", "namespace": NAMESPACE},
            "spec": {"selector": labels, "ports": [{"port": 8080}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "drift-gauge", "namespace": NAMESPACE},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "gauge",
                                "image": "localhost/dex/dex-components:dev",
                                "imagePullPolicy": "Never",
                                "command": [
                                    "python",
                                    "-c",
                                    GAUGE,
                                    DRIFT_SHARE,
                                    ",".join(MODEL_LABELS),
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/metrics", "port": 8080},
                                    "periodSeconds": 1,
                                },
                            }
                        ]
                    },
                },
            },
        },
    )
    kubectl("rollout", "status", "deployment/drift-gauge", "-n", NAMESPACE, "--timeout=180s")
    url = f"http://{kubectl.cluster_ip(NAMESPACE, 'drift-gauge')}:8080"
    kubectl("set", "env", "deployment/dex-operator", "-n", "dex-system", f"DEX_MONITOR_URL={url}")
    kubectl(
        "rollout",
        "status",
        "deployment/dex-operator",
        "-n",
        "dex-system",
        "--timeout=180s",
        timeout=200,
    )
    return DriftGauge(f"{url}/metrics")


def dexmodel(name: str, cluster: DexCluster, version: str, **rollout: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexModel",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": MODEL, "version": version, "registryUrl": cluster.mlflow_url},
            "serving": {
                "image": cluster.serving_image,
                "deploymentMode": "Standard",
                "protocol": "v2",
                "resources": SERVING_RESOURCES,
            },
            "rollout": {
                "steps": [10, 50],
                "interval": "30s",
                "failureLimit": 1,
                "analysis": [
                    {"name": "drift", "metric": "drift", "provider": "dexDrift", "threshold": 0.3}
                ],
                **rollout,
            },
        },
    }


class RouteWeights:
    """The canary weights a DexModel's HTTPRoute asks for, in order, deduplicated (None: one
    backend), read from a watch as a user's ``kubectl get -w`` would see them."""

    def __init__(self, kubeconfig: str, name: str) -> None:
        self.name = name
        self.history: list[int | None] = []
        self._api = client.CustomObjectsApi(config.new_client_from_config(kubeconfig))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RouteWeights:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        version = None
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    self._api.list_namespaced_custom_object,
                    "gateway.networking.k8s.io",
                    "v1",
                    NAMESPACE,
                    "httproutes",
                    field_selector=f"metadata.name={self.name}",
                    resource_version=version,
                    timeout_seconds=5,
                ):
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    refs = obj["spec"]["rules"][0]["backendRefs"]
                    weight = int(refs[1]["weight"]) if len(refs) > 1 else None
                    if not self.history or self.history[-1] != weight:
                        self.history.append(weight)
            except Exception:  # an expired watch starts over from a listing
                version = None
                self._stop.wait(0.2)


def route(cluster: DexCluster, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = cluster.kubectl.json("httproute", name, "-n", NAMESPACE)
    return obj


def applied_weights(cluster: DexCluster, name: str) -> list[tuple[str, int]] | None:
    """The route's backends and weights once the Gateway accepted its current generation."""
    obj = route(cluster, name)
    generation = obj["metadata"]["generation"]
    accepted = any(
        c["type"] == "Accepted" and c["status"] == "True" and c["observedGeneration"] == generation
        for parent in (obj.get("status") or {}).get("parents") or []
        for c in parent.get("conditions") or []
    )
    if not accepted:
        return None
    return [(r["name"], int(r["weight"])) for r in obj["spec"]["rules"][0]["backendRefs"]]


def status(cluster: DexCluster, name: str) -> dict[str, Any]:
    return dict(cluster.kubectl.json("dexmodel", name, "-n", NAMESPACE).get("status") or {})


def wait_status(cluster: DexCluster, name: str, want: dict[str, Any], timeout: float = 300) -> Any:
    def match() -> dict[str, Any] | None:
        now = status(cluster, name)
        return now if all(now.get(k) == v for k, v in want.items()) else None

    try:
        return eventually(match, timeout=timeout, interval=0.5, what=f"{name} {want}")
    except AssertionError as exc:
        diagnosis = cluster.kubectl.diagnose(NAMESPACE, f"{ISVC_LABEL}")
        raise AssertionError(f"{exc}\nstatus: {status(cluster, name)}\n{diagnosis}") from exc


def patch_spec(
    cluster: DexCluster, name: str, spec: dict[str, Any], namespace: str = NAMESPACE
) -> None:
    """``kubectl patch dexmodel --type=merge``: a user's edit of the spec."""
    cluster.kubectl(
        "patch", "dexmodel", name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec})
    )


def pause(cluster: DexCluster, name: str, paused: bool) -> None:
    patch = json.dumps({"spec": {"rollout": {"paused": paused}}})
    cluster.kubectl("patch", "dexmodel", name, "-n", NAMESPACE, "--type=merge", "-p", patch)


def workloads(cluster: DexCluster, isvc: str) -> dict[str, Any]:
    return workloads_in(cluster, NAMESPACE, isvc)


def workloads_in(cluster: DexCluster, namespace: str, isvc: str) -> dict[str, Any]:
    """The ReplicaSets and pods KServe made for one InferenceService (uids, restarts)."""
    selector = f"{ISVC_LABEL}={isvc}"
    replica_sets = cluster.kubectl.json("replicasets", "-n", namespace, "-l", selector)["items"]
    pods = cluster.kubectl.json("pods", "-n", namespace, "-l", selector)["items"]
    return {
        "replicasets": sorted((r["metadata"]["name"], r["metadata"]["uid"]) for r in replica_sets),
        "pods": sorted(
            (p["metadata"]["uid"], sum(c["restartCount"] for c in p["status"]["containerStatuses"]))
            for p in pods
        ),
    }


def infer_request(cluster: DexCluster) -> dict[str, Any]:
    row = cluster.expected.rows[0]
    return {
        "inputs": [
            {"name": feature, "datatype": "FP64", "shape": [1], "data": [value]}
            for feature, value in zip(FEATURES, row, strict=True)
        ]
    }


def served_versions(cluster: DexCluster, name: str, count: int) -> Counter[str]:
    """``count`` predictions through the Gateway, as a client of the DexModel's host sends
    them; which version answered each."""
    host = f"{name}-{NAMESPACE}.example.com"
    body = infer_request(cluster)
    versions: Counter[str] = Counter()
    with httpx.Client(base_url=cluster.gateway_url, headers={"Host": host}, timeout=30) as http:
        for _ in range(count):
            resp = http.post(f"/v2/models/{name}/infer", json=body)
            assert resp.status_code == 200, resp.text
            answer = resp.json()
            assert answer["model_name"] == name
            versions[str(answer["model_version"])] += 1
    return versions


@pytest.fixture(scope="module")
def versions(dex_cluster: DexCluster) -> list[str]:
    """Versions 2 and 3 of the model registered next to version 1."""
    return [register_version(dex_cluster.mlflow_url) for _ in range(2)]


def test_canary_steps_split_real_traffic_by_the_route_and_promote(
    dex_cluster: DexCluster, gauge: DriftGauge, versions: list[str]
) -> None:
    cluster, kubectl, name = dex_cluster, dex_cluster.kubectl, "canary"
    v2, v3 = versions
    began = time.monotonic()
    kubectl.apply(dexmodel(name, cluster, "1"))
    wait_status(cluster, name, {"phase": "Promoted", "stableVersion": "1"})
    cluster.timings["apply_to_ready_s"] = round(time.monotonic() - began, 1)
    assert applied_weights(cluster, name) == [(f"{name}-v1-predictor", 100)]
    assert served_versions(cluster, name, 50) == {"1": 50}
    stable_before = workloads(cluster, f"{name}-v1")

    gauge.set(name, v2, 0.05)  # the gate passes
    with RouteWeights(str(kubectl.kubeconfig), name) as weights:
        began = time.monotonic()
        patch_spec(cluster, name, {"model": {"version": v2}})
        canary_before: dict[str, Any] | None = None
        for step, weight in enumerate([10, 50]):
            wait_status(
                cluster, name, {"canaryVersion": v2, "currentStep": step, "canaryWeight": weight}
            )
            expected = [(f"{name}-v1-predictor", 100 - weight), (f"{name}-v{v2}-predictor", weight)]
            eventually(
                lambda: applied_weights(cluster, name) == expected,  # noqa: B023
                timeout=60,
                what=f"route at {weight}% applied by the Gateway",
            )
            pause(cluster, name, True)  # hold the step while it is measured
            counts = served_versions(cluster, name, REQUESTS_PER_STEP)
            share = 100 * counts[v2] / REQUESTS_PER_STEP
            cluster.timings[f"step{step + 1}_canary_share_pct"] = share
            assert set(counts) <= {"1", v2}, counts
            assert abs(share - weight) <= TOLERANCE, (weight, counts)
            assert applied_weights(cluster, name) == expected  # measured at this weight only
            # A traffic-only step: neither version's pods were replaced or restarted.
            assert workloads(cluster, f"{name}-v1") == stable_before
            canary_now = workloads(cluster, f"{name}-v{v2}")
            assert canary_before in (None, canary_now)
            canary_before = canary_now
            pause(cluster, name, False)
        final = wait_status(cluster, name, {"phase": "Promoted", "stableVersion": v2})
        cluster.timings["rollout_2_steps_s"] = round(time.monotonic() - began, 1)
        assert "canaryVersion" not in final
        eventually(
            lambda: applied_weights(cluster, name) == [(f"{name}-v{v2}-predictor", 100)],
            timeout=60,
            what="route on the promoted version alone",
        )
        assert weights.history == [None, 0, 10, 50, None]
    # The old stable is deleted once the route no longer names it; the promoted canary's
    # pods are the very ones that served at 10 and 50 % (promotion restarts nothing).
    eventually(
        lambda: (
            not kubectl.json("isvc", "-n", NAMESPACE, "-l", f"dex.dataenginex.io/dexmodel={name}")[
                "items"
            ][1:]
        ),
        timeout=120,
        what="one InferenceService left",
    )
    assert workloads(cluster, f"{name}-v{v2}") == canary_before
    assert served_versions(cluster, name, 100) == {v2: 100}

    # A failing gate: version 3 rolls back to 100 % on version 2.
    gauge.set(name, v3, 0.9)
    with RouteWeights(str(kubectl.kubeconfig), name) as weights:
        patch_spec(cluster, name, {"rollout": {"interval": "2s"}, "model": {"version": v3}})
        rolled = wait_status(cluster, name, {"phase": "RolledBack", "stableVersion": v2})
        assert "canaryVersion" not in rolled
        degraded = next(c for c in rolled["conditions"] if c["type"] == "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "AnalysisFailed")
        eventually(
            lambda: applied_weights(cluster, name) == [(f"{name}-v{v2}-predictor", 100)],
            timeout=60,
            what="route back on stable alone",
        )
        assert weights.history[-1] is None
        assert [w for w in weights.history if w is not None] == [0, 10]
    assert served_versions(cluster, name, 100) == {v2: 100}


FEATURED_MODEL = "e2e-churn"  # registered model whose versions carry feature contracts
CUSTOMERS = list(range(5001, 5041))


def write_view(cluster: DexCluster, view: str, columns: dict[str, list[Any]]) -> None:
    write_online(cluster, view, {"customer_id": CUSTOMERS}, columns)


@pytest.fixture(scope="module")
def featured(dex_cluster: DexCluster) -> dict[str, tuple[str, dict[int, float]]]:
    """Two versions of a churn model, trained on different feature services of the platform's
    Feast: version -> (feature service, each customer's probability on that service's online
    features, as the registered model computes it)."""
    rng = random.Random(11)
    n = len(CUSTOMERS)
    write_view(
        dex_cluster,
        "customer_profile",
        {
            "tenure_months": [rng.randint(1, 72) for _ in range(n)],
            "monthly_charges": [round(rng.uniform(10, 120), 2) for _ in range(n)],
            "plan_tier": [rng.randint(0, 2) for _ in range(n)],
            "contract_months": [rng.choice([1, 12, 24]) for _ in range(n)],
            "age": [rng.randint(18, 80) for _ in range(n)],
        },
    )
    write_view(
        dex_cluster,
        "customer_activity",
        {
            "sessions_7d": [rng.randint(1, 30) for _ in range(n)],
            "avg_session_minutes": [round(rng.uniform(1, 60), 2) for _ in range(n)],
            "support_tickets_30d": [rng.randint(0, 5) for _ in range(n)],
            "payment_failures_90d": [rng.randint(0, 3) for _ in range(n)],
            "days_since_last_login": [rng.randint(0, 30) for _ in range(n)],
        },
    )
    out: dict[str, tuple[str, dict[int, float]]] = {}
    for seed, service in enumerate(["churn_profile_only", "churn_v1"]):
        version, probabilities = register_on_online_features(
            dex_cluster, FEATURED_MODEL, service, CUSTOMERS, seed
        )
        out[version] = (service, dict(zip(CUSTOMERS, probabilities, strict=True)))
    return out


def featured_answers(cluster: DexCluster, name: str, count: int) -> list[tuple[int, str, float]]:
    """``count`` predictions by entity key through the Gateway: (customer, version, probability)."""
    host = f"{name}-{NAMESPACE}.example.com"
    rng = random.Random(count)
    out = []
    with httpx.Client(base_url=cluster.gateway_url, headers={"Host": host}, timeout=30) as http:
        for _ in range(count):
            customer = rng.choice(CUSTOMERS)
            body = {
                "inputs": [
                    {"name": "customer_id", "datatype": "INT64", "shape": [1], "data": [customer]}
                ]
            }
            resp = http.post(f"/v2/models/{name}/infer", json=body)
            assert resp.status_code == 200, resp.text
            answer = resp.json()
            (probability,) = next(o for o in answer["outputs"] if o["name"] == "probability")[
                "data"
            ]
            out.append((customer, str(answer["model_version"]), float(probability)))
    return out


@pytest.mark.parametrize("component", ["transformer", "predictor"])
def test_every_answer_of_a_feature_enriched_canary_carries_its_own_versions_features(
    dex_cluster: DexCluster,
    gauge: DriftGauge,
    featured: dict[str, tuple[str, dict[int, float]]],
    component: str,
) -> None:
    """Version A reads the profile features only; version B the full churn_v1 service (two
    views and on-demand ratios). At the 50 % step each answer's probability is its own
    version's model on its own version's features: a request that met the other version's
    transformer or features would give the other number (every customer's two differ).
    ``component``: who reads the features, a transformer in front of each predictor or each
    predictor itself (one hop, no transformer pod)."""
    cluster, kubectl = dex_cluster, dex_cluster.kubectl
    name = "featured" if component == "transformer" else "one-hop"
    (va, (service_a, expect_a)), (vb, (service_b, expect_b)) = featured.items()
    same = [c for c in CUSTOMERS if abs(expect_a[c] - expect_b[c]) <= 1e-6]
    assert not same, (same, expect_a, expect_b)
    expected = {va: expect_a, vb: expect_b}
    obj = dexmodel(name, cluster, va, steps=[50])
    obj["spec"]["model"]["name"] = FEATURED_MODEL
    obj["spec"]["features"] = {
        "featureService": service_a,
        "entityKey": "customer_id",
        "image": cluster.serving_image,
        "component": component,
    }
    try:
        kubectl.apply(obj)
        wait_status(cluster, name, {"phase": "Promoted", "stableVersion": va})
        assert applied_weights(cluster, name) == [(f"{name}-v{va}-{component}", 100)]
        components = kubectl.json("isvc", f"{name}-v{va}", "-n", NAMESPACE)["spec"]
        assert ("transformer" in components) == (component == "transformer")
        for customer, version, probability in featured_answers(cluster, name, 50):
            assert version == va
            assert probability == pytest.approx(expect_a[customer], abs=1e-9)

        gauge.set(name, vb, 0.05)
        # A new version trained on another feature service: both change in one edit.
        patch_spec(
            cluster, name, {"model": {"version": vb}, "features": {"featureService": service_b}}
        )
        wait_status(cluster, name, {"canaryVersion": vb, "currentStep": 0, "canaryWeight": 50})
        split = [(f"{name}-v{va}-{component}", 50), (f"{name}-v{vb}-{component}", 50)]
        eventually(
            lambda: applied_weights(cluster, name) == split,
            timeout=60,
            what="route at 50% applied by the Gateway",
        )
        pause(cluster, name, True)
        answers = featured_answers(cluster, name, REQUESTS_PER_STEP)
        wrong = [
            (c, v, p) for c, v, p in answers if v not in expected or abs(p - expected[v][c]) > 1e-9
        ]
        assert not wrong, wrong[:10]
        share = 100 * sum(v == vb for _, v, _ in answers) / REQUESTS_PER_STEP
        cluster.timings[f"featured_canary_share_pct_{component}"] = share
        assert abs(share - 50) <= TOLERANCE, share
        pause(cluster, name, False)

        wait_status(cluster, name, {"phase": "Promoted", "stableVersion": vb})
        eventually(
            lambda: applied_weights(cluster, name) == [(f"{name}-v{vb}-{component}", 100)],
            timeout=60,
            what="route on the promoted version alone",
        )
        for customer, version, probability in featured_answers(cluster, name, 100):
            assert version == vb
            assert probability == pytest.approx(expect_b[customer], abs=1e-9)
    finally:
        # Serving pods fewer for the tests after this one on the 2-core node.
        kubectl("delete", "dexmodel", name, "-n", NAMESPACE, "--timeout=120s", check=False)


def test_a_refused_canary_is_degraded_with_the_reason_and_nothing_half_applied(
    dex_cluster: DexCluster, versions: list[str]
) -> None:
    """The cluster refuses the canary's InferenceService (a ResourceQuota on their count: a
    refusal no DexModel schema rule can foresee). The DexModel says why, in a condition and
    one Warning Event quoting the API server; the route and stable's pods stay as they were;
    once the quota allows it, the next reconcile creates it and the condition clears."""
    kubectl, name, namespace = dex_cluster.kubectl, "quota", f"{NAMESPACE}-quota"
    kubectl("create", "namespace", namespace)
    try:
        quota = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "isvc-count", "namespace": namespace},
            "spec": {"hard": {"count/inferenceservices.serving.kserve.io": "1"}},
        }
        kubectl.apply(quota)
        obj = dexmodel(name, dex_cluster, "1")
        obj["metadata"]["namespace"] = namespace
        kubectl.apply(obj)

        def dm() -> dict[str, Any]:
            found: dict[str, Any] = kubectl.json("dexmodel", name, "-n", namespace)
            return found

        eventually(
            lambda: (dm().get("status") or {}).get("phase") == "Promoted",
            timeout=300,
            interval=0.5,
            what="v1 promoted",
        )
        stable = workloads_in(dex_cluster, namespace, f"{name}-v1")
        routed = kubectl.json("httproute", name, "-n", namespace)["spec"]
        patch_spec(dex_cluster, name, {"model": {"version": versions[0]}}, namespace)

        def degraded() -> dict[str, Any] | None:
            conds = (dm().get("status") or {}).get("conditions") or []
            found = next((c for c in conds if c["type"] == "Degraded"), None)
            return found if found and found["status"] == "True" else None

        found = eventually(degraded, timeout=60, interval=0.5, what="Degraded")
        assert found["reason"] == "InferenceServiceRejected"
        assert "exceeded quota: isvc-count" in found["message"], found
        events = kubectl.json(
            "events", "-n", namespace, f"--field-selector=involvedObject.name={name}"
        )["items"]
        warnings = [e for e in events if e["reason"] == "InferenceServiceRejected"]
        assert [(e["type"], e["message"]) for e in warnings] == [("Warning", found["message"])]
        # Nothing half-applied: no canary, the route as it was, stable's pods untouched.
        assert [i["metadata"]["name"] for i in kubectl.json("isvc", "-n", namespace)["items"]] == [
            f"{name}-v1"
        ]
        assert kubectl.json("httproute", name, "-n", namespace)["spec"] == routed
        assert workloads_in(dex_cluster, namespace, f"{name}-v1") == stable

        quota["spec"] = {"hard": {"count/inferenceservices.serving.kserve.io": "2"}}
        kubectl.apply(quota)
        eventually(
            lambda: (
                degraded() is None
                and kubectl(
                    "get", "isvc", f"{name}-v{versions[0]}", "-n", namespace, check=False
                ).returncode
                == 0
            ),
            timeout=60,
            interval=0.5,
            what="canary created once the quota allows it",
        )
    finally:
        kubectl("delete", "dexmodel", "--all", "-n", namespace, "--timeout=60s", check=False)
        kubectl("delete", "namespace", namespace, "--timeout=120s", check=False, timeout=150)


def _operator_pid(cluster: DexCluster) -> tuple[str, int]:
    """The operator pod and its container's process on this host (the node is this host)."""
    (pod,) = [
        p
        for p in cluster.kubectl.json(
            "pods", "-n", "dex-system", "-l", "app.kubernetes.io/name=dex-operator"
        )["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]
    (container,) = pod["status"]["containerStatuses"]
    container_id = container["containerID"].split("://", 1)[1]
    tasks = subprocess.run(
        ["ctr", f"--address={cluster.containerd_socket}", "--namespace=k8s.io", "task", "ls"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in tasks.splitlines()[1:]:
        task, pid, *_ = line.split()
        if task == container_id:
            return pod["metadata"]["name"], int(pid)
    raise AssertionError(f"no task for {container_id}")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_of_the_operator_mid_rollout_repeats_and_skips_no_step(
    dex_cluster: DexCluster, gauge: DriftGauge, versions: list[str], seed: int
) -> None:
    cluster, kubectl, name = dex_cluster, dex_cluster.kubectl, f"crash-{seed}"
    v2 = versions[0]
    steps = [10, 25, 50]
    kubectl.apply(dexmodel(name, cluster, "1", steps=steps, interval="1s"))
    wait_status(cluster, name, {"phase": "Promoted", "stableVersion": "1"})
    gauge.set(name, v2, 0.05)
    rng = random.Random(seed)
    kills = 0
    with RouteWeights(str(kubectl.kubeconfig), name) as weights:
        patch_spec(cluster, name, {"model": {"version": v2}})
        seen = None
        deadline = time.monotonic() + 300
        while (now := status(cluster, name)).get("phase") != "Promoted" or now.get(
            "stableVersion"
        ) != v2:
            assert time.monotonic() < deadline, now
            point = (now.get("phase"), now.get("currentStep"), now.get("canaryWeight"))
            if point != seen:
                seen = point
                if kills < 3 and rng.random() < 0.5:
                    pod, pid = _operator_pid(cluster)
                    os.kill(pid, signal.SIGKILL)  # the operator's process, no grace
                    kills += 1
                    # A fresh pod (no crash-loop backoff), as a node drain would give.
                    kubectl("delete", "pod", pod, "-n", "dex-system", "--wait=false")
                    kubectl(
                        "rollout",
                        "status",
                        "deployment/dex-operator",
                        "-n",
                        "dex-system",
                        "--timeout=180s",
                        timeout=200,
                    )
            time.sleep(0.05)  # the watcher's sampling period, not a wait for a condition
        eventually(lambda: weights.history[-1:] == [None], timeout=60, what="route on v2 alone")
    cluster.timings[f"crash_seed{seed}_kills"] = kills
    assert weights.history == [None, 0, *steps, None], (kills, weights.history)


@pytest.fixture(scope="module", autouse=True)
def _print_timings(dex_cluster: DexCluster) -> Iterator[None]:
    yield
    print(f"\nrollout timings: {dex_cluster.timings}")
