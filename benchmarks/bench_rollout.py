"""Rollouts on the real stack (``dex_testing.clusterstack``): KServe's manager making real pods
on the dev node, Traefik splitting by the DexModel's HTTPRoute, the operator as a pod.

* apply -> Ready: ``kubectl apply`` of DexModels (one at a time) until each is Ready (KServe
  reports its InferenceService Ready and the Gateway accepted its route). Floor: the same
  predictor container as a bare Deployment, apply -> its rollout complete (what KServe and
  DEX add is the ratio).
* a 3-step canary (10/25/50 %, 1 s holds, no analysis): version patch -> Promoted. Floor:
  the canary's own pod start plus the three holds.
* the operator pod's RSS afterwards.
Needs root, ``make node images kserve gateway``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from dex_testing.clusterstack import (
    MODEL,
    NAMESPACE,
    SERVING_RESOURCES,
    DexCluster,
    dex_stack,
    register_version,
)
from dex_testing.devcluster import eventually, take_snapshot

APPLIES = 6
STEPS = [10, 25, 50]


def _dexmodel(name: str, cluster: DexCluster, version: str) -> dict[str, Any]:
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
            "rollout": {"steps": STEPS, "interval": "1s"},
        },
    }


def _status(cluster: DexCluster, name: str) -> dict[str, Any]:
    return dict(cluster.kubectl.json("dexmodel", name, "-n", NAMESPACE).get("status") or {})


def _ready(cluster: DexCluster, name: str) -> bool:
    conds = _status(cluster, name).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _bare_deployment(cluster: DexCluster, name: str) -> dict[str, Any]:
    """Version 1's predictor container, as the operator renders it, in a plain Deployment."""
    isvc = cluster.kubectl.json("isvc", "bench-0-v1", "-n", NAMESPACE)
    (container,) = isvc["spec"]["predictor"]["containers"]
    container = {
        **container,
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": 8080},
            "periodSeconds": 1,
        },
    }
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def _operator_rss_mib(cluster: DexCluster) -> float:
    (pod,) = cluster.kubectl.json(
        "pods", "-n", "dex-system", "-l", "app.kubernetes.io/name=dex-operator"
    )["items"]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    tasks = subprocess.run(
        ["ctr", f"--address={cluster.containerd_socket}", "--namespace=k8s.io", "task", "ls"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pid = next(
        int(line.split()[1]) for line in tasks.splitlines()[1:] if line.startswith(container_id)
    )
    # The container's init is the operator (python -m dex_operator), children included.
    pids = [pid, *_children(pid)]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += [int(child), *_children(int(child))]
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="dex-bench-rollout-") as tmp:
        work = Path(tmp)
        before = take_snapshot(work)
        with dex_stack(work) as cluster:
            rows = _measure(cluster)
        left = before.diff(take_snapshot(work))
        if left:
            raise AssertionError("the stack left things behind: " + "; ".join(left))
        return rows


def _measure(cluster: DexCluster) -> list[dict[str, object]]:
    kubectl = cluster.kubectl
    ready_s: list[float] = []
    for i in range(APPLIES):
        name = f"bench-{i}"
        began = time.monotonic()
        kubectl.apply(_dexmodel(name, cluster, "1"))
        eventually(lambda n=name: _ready(cluster, n), timeout=300, interval=0.2, what=name)  # type: ignore[misc]
        ready_s.append(time.monotonic() - began)
    floor_s: list[float] = []
    for i in range(3):
        began = time.monotonic()
        kubectl.apply(_bare_deployment(cluster, f"bare-{i}"))
        kubectl(
            "rollout",
            "status",
            f"deployment/bare-{i}",
            "-n",
            NAMESPACE,
            "--timeout=300s",
            timeout=320,
        )
        floor_s.append(time.monotonic() - began)
    version = register_version(cluster.mlflow_url)
    began = time.monotonic()
    kubectl(
        "patch",
        "dexmodel",
        "bench-0",
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"model": {"version": version}}}),
    )
    eventually(
        lambda: _status(cluster, "bench-0").get("stableVersion") == version,
        timeout=300,
        interval=0.2,
        what="3-step rollout promoted",
    )
    rollout_s = time.monotonic() - began
    floor_rollout = statistics.median(floor_s) + len(STEPS) * 1.0
    rss = _operator_rss_mib(cluster)
    p50, p99 = statistics.median(ready_s), _pct(ready_s, 0.99)
    floor = statistics.median(floor_s)
    return [
        {
            "case": f"apply -> Ready p50, s ({APPLIES} DexModels)",
            "value": p50,
            "floor": floor,
            "ratio": p50 / floor,
        },
        {
            "case": f"apply -> Ready p99, s ({APPLIES} DexModels)",
            "value": p99,
            "floor": floor,
            "ratio": p99 / floor,
        },
        {
            "case": "3-step canary, patch -> Promoted, s",
            "value": rollout_s,
            "floor": floor_rollout,
            "ratio": rollout_s / floor_rollout,
        },
        {"case": "operator pod RSS, MiB", "value": rss},
    ]
