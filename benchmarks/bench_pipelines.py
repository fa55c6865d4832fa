"""DexPipelines on the real Kubeflow Pipelines 2.17 backend (``make kfp``: API server, its
agents, MariaDB, the S3 store) and the test control plane, the operator as a subprocess.

* KFP backend start: from nothing to the API server healthy and its agents running (the CRDs
  applied, MariaDB's data folder made), and each process's RSS after the benchmark's work.
* drift crossing -> KFP run created: p50/p99 over 20 DexPipelines, each armed on its own
  DexModel (drift share below the trigger's threshold), then crossed one by one; from the
  gauge changing to the run listed in KFP. The operator reads drift on its DexPipeline timer
  (``DEX_PIPELINE_SYNC_SECONDS``: 1 s here, 30 s by default), so the floor is the same run
  created directly on the same API server plus half a timer interval (the expected wait for
  the next read).
* 100 DexPipelines reconciled: created at once, until each is Ready (``Scheduled``: its
  recurring run exists in KFP), by an operator on the default timer. The floor: the same KFP
  calls from one client with no operator (the experiment, the version found by its content,
  100 recurring runs). Then the operator's RSS.

DexModels reach Promoted (a trigger follows a DexModel's stable version) through
``KServeStandIn`` reporting their InferenceServices Ready (no node runs pods here) and Traefik
accepting their HTTPRoutes; the drift share is a Prometheus endpoint set by the benchmark
(``DriftEndpoint``), read by the operator as it reads the DEX monitor's.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client, config

from benchmarks.measure import percentile, rss_mib
from dex_operator.config import OperatorConfig
from dex_operator.kfp import KfpClient
from dex_operator.pipelines import kfp_cron, typed_parameters
from dex_pipelines.catalog import COMPILED_DIR
from dex_testing import SOURCE_ROOT
from dex_testing.crds import wait_established
from dex_testing.devcluster import ControlPlane, ControlPlaneConfig, eventually, find_assets
from dex_testing.drift_endpoint import DriftEndpoint
from dex_testing.gateway import Gateway
from dex_testing.kfp_backend import KFPBackend
from dex_testing.kserve_manager import find_kserve
from dex_testing.kserve_standin import KServeStandIn
from dex_testing.operator_process import OperatorProcess
from dexctl.processes import free_ports

GROUP, VERSION = "dex.dataenginex.io", "v1alpha1"
CROSSINGS = 20
SCALE = 100
SYNC_SECONDS = 1.0
PIPELINE = "dex-training"
PARAMETERS = {"entity_source": "/data/labels.parquet", "n_trials": "5"}
PACKAGE = (COMPILED_DIR / "training.yaml").read_bytes()


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


def _dexpipeline(name: str, experiment: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DexPipeline",
        "metadata": {"name": name},
        "spec": {
            "pipeline": {"name": "training"},
            "parameters": PARAMETERS,
            "kfp": {"experiment": experiment},
            **spec,
        },
    }


def _items(api: client.CustomObjectsApi, ns: str, plural: str) -> list[dict[str, Any]]:
    return list(api.list_namespaced_custom_object(GROUP, VERSION, ns, plural)["items"])


def run() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with (
        ControlPlane(ControlPlaneConfig(), find_assets()) as state,
        tempfile.TemporaryDirectory(prefix="bench-pipelines-") as tmp,
        DriftEndpoint() as drift,
    ):
        kubeconfig = state.kubeconfig
        kubectl = ["kubectl", f"--kubeconfig={kubeconfig}"]
        for crds in (SOURCE_ROOT / "manifests/crd", find_kserve().crd):
            subprocess.run(
                [*kubectl, "apply", "--server-side", "-k", str(crds)],
                check=True,
                capture_output=True,
            )
        wait_established(
            kubeconfig,
            [
                "dexmodels.dex.dataenginex.io",
                "dexpipelines.dex.dataenginex.io",
                "inferenceservices.serving.kserve.io",
            ],
        )
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        api = client.CustomObjectsApi(api_client)
        core = client.CoreV1Api(api_client)
        for ns in ("crossing", "scale"):
            core.create_namespace({"metadata": {"name": ns}})

        started = time.monotonic()
        backend = KFPBackend(kubeconfig, Path(tmp) / "kfp")
        with backend:
            start_s = round(time.monotonic() - started, 2)

            def operator(name: str, namespace: str, sync_seconds: float) -> OperatorProcess:
                metrics, liveness = free_ports(2)
                return OperatorProcess(
                    kubeconfig,
                    Path(tmp) / f"operator-{name}.log",
                    {
                        "DEX_KFP_URL": backend.url,
                        "DEX_PIPELINE_SYNC_SECONDS": str(sync_seconds),
                        "DEX_MONITOR_URL": drift.url,
                        "DEX_METRICS_PORT": str(metrics),
                        "DEX_LIVENESS_PORT": str(liveness),
                        "DEX_NAMESPACES": f'["{namespace}"]',
                    },
                ).start()

            with (
                Gateway(kubeconfig, Path(tmp) / "gateway"),
                KServeStandIn(kubeconfig, ready_after=0.0),
            ):
                op = operator("crossing", "crossing", SYNC_SECONDS)
                try:
                    rows.append(_crossings(api, backend, drift))
                finally:
                    op.stop()
                # Its own operator on the default timer: 100 DexPipelines each read from KFP
                # every second would measure that polling, not the reconciling.
                op = operator("scale", "scale", OperatorConfig().pipeline_sync_seconds)
                try:
                    rows.append(_scale(api, backend))
                    operator_rss = rss_mib(op.pid)
                finally:
                    op.stop()
            rss = {name: rss_mib(child.pid) for name, child in backend.children.items()}
        rows.append(
            {
                "bench": "KFP backend start (CRDs, MariaDB, S3, API server, agents)",
                "seconds": start_s,
                "rss_mib": round(sum(rss.values()), 1),
                "detail": ", ".join(f"{k} {v}" for k, v in rss.items()),
            }
        )
        rows.append({"bench": f"operator RSS with {SCALE} DexPipelines", "rss_mib": operator_rss})
        api_client.close()
    return rows


def _crossings(
    api: client.CustomObjectsApi, backend: KFPBackend, drift: DriftEndpoint
) -> dict[str, object]:
    ns, experiment = "crossing", "bench-crossing"
    for i in range(CROSSINGS):
        api.create_namespaced_custom_object(GROUP, VERSION, ns, "dexmodels", _dexmodel(f"m-{i}"))

    def stable_versions() -> dict[str, str] | None:
        found = {
            m["metadata"]["name"]: str(m["status"]["stableVersion"])
            for m in _items(api, ns, "dexmodels")
            if (m.get("status") or {}).get("phase") == "Promoted"
        }
        return found if len(found) == CROSSINGS else None

    versions = eventually(stable_versions, timeout=300, interval=0.5, what="DexModels Promoted")
    assert versions is not None  # eventually returns only a truthy value
    for model, version in versions.items():
        drift.set(model, version, 0.1)
    for i in range(CROSSINGS):
        trigger = {"dexModel": f"m-{i}", "threshold": 0.3, "cooldown": "1h"}
        body = _dexpipeline(f"p-{i}", experiment, triggers=[trigger])
        api.create_namespaced_custom_object(GROUP, VERSION, ns, "dexpipelines", body)

    def armed() -> bool:
        shares = [
            ((p.get("status") or {}).get("triggers") or [{}])[0].get("driftShare")
            for p in _items(api, ns, "dexpipelines")
        ]
        return shares.count(0.1) == CROSSINGS

    eventually(armed, timeout=300, interval=0.5, what="triggers armed at 0.1")
    latencies: list[float] = []
    with KfpClient(backend.url) as kfp:
        experiment_id = kfp.ensure_experiment(experiment)
        for i in range(CROSSINGS):
            model = f"m-{i}"
            run_name = f"{ns}.p-{i}.drift-{model}-1"
            began = time.monotonic()
            drift.set(model, versions[model], 0.6)
            eventually(
                partial(kfp.find_run, experiment_id, run_name),
                timeout=60,
                interval=0.02,
                what=f"run {run_name}",
            )
            latencies.append(time.monotonic() - began)
        # The floor: the same run made directly (the version exists, found by its content).
        pipeline_version = kfp.ensure_version(PIPELINE, PACKAGE)
        direct: list[float] = []
        for i in range(CROSSINGS):
            began = time.monotonic()
            kfp.ensure_run(
                experiment_id=experiment_id, version=pipeline_version,
                display_name=f"floor-{i}", description="floor",
                parameters=typed_parameters(PACKAGE, PARAMETERS),
            )  # fmt: skip
            direct.append(time.monotonic() - began)
    p50 = statistics.median(latencies)
    floor = statistics.median(direct) + SYNC_SECONDS / 2
    return {
        "bench": f"drift crossing -> KFP run created ({CROSSINGS}, timer {SYNC_SECONDS:g} s)",
        "p50_s": round(p50, 3),
        "p99_s": round(percentile(latencies, 0.99), 3),
        "floor_s": round(floor, 3),
        "ratio": round(p50 / floor, 2),
        "detail": f"floor: run created directly p50 {statistics.median(direct):.3f} s "
        f"+ half the timer",
    }


def _scale(api: client.CustomObjectsApi, backend: KFPBackend) -> dict[str, object]:
    ns = "scale"
    started = time.monotonic()
    for i in range(SCALE):
        body = _dexpipeline(f"s-{i:03d}", "bench-scale", schedule="0 3 * * *")
        api.create_namespaced_custom_object(GROUP, VERSION, ns, "dexpipelines", body)

    def scheduled() -> bool:
        count = 0
        for p in _items(api, ns, "dexpipelines"):
            for c in (p.get("status") or {}).get("conditions") or []:
                count += (c["type"], c["status"], c.get("reason")) == ("Ready", "True", "Scheduled")
        return count == SCALE

    eventually(scheduled, timeout=600, interval=0.5, what=f"{SCALE} DexPipelines Scheduled")
    seconds = time.monotonic() - started

    began = time.monotonic()
    with KfpClient(backend.url) as kfp:
        experiment_id = kfp.ensure_experiment("bench-floor")
        pipeline_version = kfp.ensure_version(PIPELINE, PACKAGE)
        for i in range(SCALE):
            kfp.create_recurring_run(
                experiment_id=experiment_id, version=pipeline_version,
                display_name=f"floor.s-{i:03d}", description="floor",
                cron=kfp_cron("0 3 * * *"), parameters=typed_parameters(PACKAGE, PARAMETERS),
                enabled=True,
            )  # fmt: skip
    floor = time.monotonic() - began
    return {
        "bench": f"{SCALE} DexPipelines reconciled to Scheduled",
        "seconds": round(seconds, 1),
        "floor_s": round(floor, 1),
        "ratio": round(seconds / floor, 2),
        "detail": "floor: the KFP calls from one client, no operator",
    }


if __name__ == "__main__":
    for row in run():
        print(row)
