"""DEX operator at scale, on the real test control plane with the operator as a subprocess.

* apply -> InferenceService created: p50/p99 over 100 DexModels applied one by one (target
  p99 < 1 s), measured from the create call returning to the ISVC's ADDED watch event.
* time to reconcile 500 DexModels created at once until all report phase Promoted
  (target < 60 s). The KServe controller is stood in for by ``KServeStandIn`` (no node:
  nothing could run its pods); the Gateway accepting each DexModel's HTTPRoute is Traefik.
* operator RSS with 1000 DexModels reconciled (target < 200 MB).
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from dex_operator import MODEL_LABEL
from dex_testing import SOURCE_ROOT
from dex_testing.crds import wait_established
from dex_testing.devcluster import ControlPlane, ControlPlaneConfig, eventually, find_assets
from dex_testing.gateway import Gateway
from dex_testing.kserve_manager import find_kserve
from dex_testing.kserve_standin import KServeStandIn
from dex_testing.operator_process import OperatorProcess
from dexctl.processes import free_ports

REPO = SOURCE_ROOT
GROUP, VERSION = "dex.dataenginex.io", "v1alpha1"


def _dexmodel(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DexModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"storageUri": f"s3://bench/{name}"},
            "serving": {"deploymentMode": "Standard"},
        },
    }


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _count_phase(api: client.CustomObjectsApi, ns: str, phase: str) -> int:
    items = api.list_namespaced_custom_object(GROUP, VERSION, ns, "dexmodels")["items"]
    return sum((i.get("status") or {}).get("phase") == phase for i in items)


def run() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with (
        ControlPlane(ControlPlaneConfig(), find_assets()) as state,
        tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp,
    ):
        kubeconfig = state.kubeconfig
        kubectl = ["kubectl", f"--kubeconfig={kubeconfig}"]
        subprocess.run(
            [*kubectl, "apply", "--server-side", "-k", str(REPO / "manifests/crd")],
            check=True,
            capture_output=True,
        )
        subprocess.run(  # KServe's real CRDs (`make kserve`)
            [*kubectl, "apply", "--server-side", "-k", str(find_kserve().crd)],
            check=True,
            capture_output=True,
        )
        wait_established(
            kubeconfig, ["dexmodels.dex.dataenginex.io", "inferenceservices.serving.kserve.io"]
        )
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        api = client.CustomObjectsApi(api_client)
        core = client.CoreV1Api(api_client)
        for ns in ("latency", "scale"):
            core.create_namespace({"metadata": {"name": ns}})
        # Traefik accepts the DexModels' HTTPRoutes (Standard mode's weights count once the
        # Gateway has them; its CRDs exist before the operator starts watching), and the
        # stand-in reports the InferenceServices Ready (no node here).
        with Gateway(kubeconfig, Path(tmp) / "gateway"):
            metrics, liveness = free_ports(2)
            op = OperatorProcess(
                kubeconfig,
                Path(tmp) / "operator.log",
                {
                    "DEX_RESYNC_SECONDS": "30",
                    "DEX_METRICS_PORT": str(metrics),
                    "DEX_LIVENESS_PORT": str(liveness),
                    "DEX_WORKER_LIMIT": "20",
                },
            ).start()
            try:
                with KServeStandIn(kubeconfig, ready_after=0.0):
                    rows.append(_latency(api, "latency", 100))
                    rows.append(_scale(api, "scale", 500))
                    rows.append(_memory(api, "scale", 1000, op.pid))
            finally:
                op.stop()
        api_client.close()
    return rows


def _latency(api: client.CustomObjectsApi, ns: str, count: int) -> dict[str, object]:
    created: dict[str, float] = {}
    ready = threading.Event()

    def watch_isvcs() -> None:
        stream = watch.Watch().stream(
            api.list_namespaced_custom_object,
            "serving.kserve.io",
            "v1beta1",
            ns,
            "inferenceservices",
            timeout_seconds=120,
        )
        ready.set()
        for event in stream:
            if event["type"] == "ADDED":
                # Standard mode: the version's InferenceService, labelled with its DexModel.
                owner = event["object"]["metadata"]["labels"][MODEL_LABEL]
                created.setdefault(owner, time.monotonic())
            if len(created) >= count:
                return

    thread = threading.Thread(target=watch_isvcs, daemon=True)
    thread.start()
    ready.wait(10)
    sent: dict[str, float] = {}
    latencies = []
    for i in range(count):
        name = f"lat-{i:03d}"
        api.create_namespaced_custom_object(GROUP, VERSION, ns, "dexmodels", _dexmodel(name))
        sent[name] = time.monotonic()
        eventually(
            partial(created.__contains__, name), timeout=30, interval=0.005, what=f"isvc {name}"
        )
        latencies.append(created[name] - sent[name])
    return {
        "bench": "apply -> ISVC created (100, sequential)",
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(_percentile(latencies, 0.99), 3),
        "target": "p99 < 1 s",
    }


def _scale(api: client.CustomObjectsApi, ns: str, count: int) -> dict[str, object]:
    start = time.monotonic()
    for i in range(count):
        api.create_namespaced_custom_object(
            GROUP, VERSION, ns, "dexmodels", _dexmodel(f"s-{i:04d}")
        )
    eventually(
        lambda: _count_phase(api, ns, "Promoted") >= count,
        timeout=600,
        interval=1.0,
        what=f"{count} Promoted",
    )
    return {
        "bench": f"reconcile {count} DexModels to Promoted",
        "seconds": round(time.monotonic() - start, 1),
        "target": "< 60 s",
    }


def _memory(api: client.CustomObjectsApi, ns: str, total: int, pid: int) -> dict[str, object]:
    existing = len(api.list_namespaced_custom_object(GROUP, VERSION, ns, "dexmodels")["items"])
    for i in range(existing, total):
        api.create_namespaced_custom_object(
            GROUP, VERSION, ns, "dexmodels", _dexmodel(f"s-{i:04d}")
        )
    eventually(
        lambda: _count_phase(api, ns, "Promoted") >= total,
        timeout=900,
        interval=2.0,
        what=f"{total} Promoted",
    )
    return {
        "bench": f"operator RSS with {total} DexModels",
        "rss_mib": _rss_mib(pid),
        "target": "< 200 MB",
    }


if __name__ == "__main__":
    for row in run():
        print(row)
