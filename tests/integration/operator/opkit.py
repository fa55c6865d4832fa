"""Helpers shared by the operator integration tests (kubectl, manifests, drift endpoint)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dex_testing import SOURCE_ROOT
from dex_testing.drift_endpoint import DriftEndpoint as DriftEndpoint  # the tests' import
from dex_testing.kfp_backend import NAMESPACE as KFP_NAMESPACE
from dexctl.polling import eventually

REPO = SOURCE_ROOT
CRD_DIR = REPO / "manifests" / "crd"
RBAC_DIR = REPO / "manifests" / "rbac"


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


def sample_value(metrics_url: str, sample: str, labels: dict[str, str]) -> float | None:
    """One sample from a Prometheus text endpoint (the operator's /metrics), None if absent."""
    text = httpx.get(metrics_url, timeout=5).raise_for_status().text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return None


def dexmodel(
    name: str,
    namespace: str,
    *,
    version: str | None = None,
    storage_uri: str | None = None,
    steps: list[int] | None = None,
    interval: str = "1s",
    failure_limit: int = 1,
    mode: str = "Standard",
    drift_threshold: float | None = 0.3,
    **rollout: Any,
) -> dict[str, Any]:
    model: dict[str, Any] = {"name": "churn-classifier"}
    if version:
        model["version"] = version
    if storage_uri:
        model = {"storageUri": storage_uri}
    analysis = []
    if drift_threshold is not None:
        analysis.append(
            {
                "name": "drift",
                "metric": "drift",
                "provider": "dexDrift",
                "threshold": drift_threshold,
            }
        )
    return {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": model,
            "serving": {"deploymentMode": mode},
            "rollout": {
                "steps": steps or [10, 50],
                "interval": interval,
                "failureLimit": failure_limit,
                "analysis": analysis,
                **rollout,
            },
        },
    }


def promoted_dexmodel(kubeconfig: Path, namespace: str, name: str, storage_uri: str) -> str:
    """A DexModel serving ``storage_uri`` with no drift analysis, applied and waited on until
    Promoted (a DexPipeline's drift trigger follows its stable version); that version."""
    apply(kubeconfig, dexmodel(name, namespace, storage_uri=storage_uri, drift_threshold=None))

    def promoted() -> str | None:
        status = get_json(kubeconfig, "dm", name, "-n", namespace).get("status") or {}
        return status.get("stableVersion") if status.get("phase") == "Promoted" else None

    version: str = eventually(promoted, timeout=60, interval=0.3, what=f"{name} Promoted")
    return version


def dexpipeline(namespace: str, name: str, experiment: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "pipeline": {"name": "training"},
            "parameters": {"entity_source": "/data/labels.parquet", "n_trials": "5"},
            "schedule": "0 3 * * *",
            "kfp": {"experiment": experiment},
            **spec,
        },
    }


def finish_workflow(kubeconfig: Path, run_id: str) -> None:
    """Argo's part (no Argo controller in this tier): the run's Workflow Succeeded."""

    def workflow() -> str | None:
        items = get_json(
            kubeconfig,
            "workflows.argoproj.io",
            "-n",
            KFP_NAMESPACE,
            "-l",
            f"pipeline/runid={run_id}",
        )["items"]
        return items[0]["metadata"]["name"] if items else None

    found = eventually(workflow, timeout=30, interval=0.3, what="the run's Workflow")
    status = {
        "phase": "Succeeded",
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:01:00Z",
    }
    kubectl(
        kubeconfig, "patch", "workflows.argoproj.io", found, "-n", KFP_NAMESPACE,
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip


def apply(kubeconfig: Path, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(obj), check=False)


def uri_version(storage_uri: str) -> str:
    """The version label of a storageUri-only source (one owner: dex.metrics)."""
    from dex.metrics import version_label

    return version_label(None, storage_uri)


def get_json(kubeconfig: Path, *args: str) -> Any:
    import json

    return json.loads(kubectl(kubeconfig, "get", *args, "-o", "json").stdout)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return None


def events_for(kubeconfig: Path, namespace: str, name: str) -> list[dict[str, Any]]:
    items = get_json(
        kubeconfig, "events", "-n", namespace, f"--field-selector=involvedObject.name={name}"
    )["items"]
    return list(items)


def final_history(kserve: Any, namespace: str, name: str, timeout: float = 15) -> list[int | None]:
    """The stand-in's weight history once the canary is gone. Status is written before the
    InferenceService (see controller), so Promoted/RolledBack can be seen a moment earlier."""
    from dex_testing.devcluster import eventually

    eventually(
        lambda: kserve.history(namespace, name)[-1:] == [None],
        timeout=timeout,
        what=f"{name}: traffic back to one version",
    )
    history: list[int | None] = kserve.history(namespace, name)
    return history


def isvc_name(name: str, uri: str, version: str | None = None) -> str:
    """Standard mode's InferenceService of one model version (``dex_operator.isvc``)."""
    from dex_operator.isvc import isvc_name as render_name
    from dex_operator.rollout import Target

    return render_name(name, Target(uri, version or uri_version(uri)), "Standard")


def owned_isvcs(kubeconfig: Path, namespace: str, name: str) -> list[str]:
    listed = get_json(
        kubeconfig, "isvc", "-n", namespace, "-l", f"dex.dataenginex.io/dexmodel={name}"
    )
    return sorted(item["metadata"]["name"] for item in listed["items"])


def only_isvc(
    kubeconfig: Path, namespace: str, name: str, isvc: str, timeout: float = 15
) -> dict[str, Any]:
    """Waits until ``isvc`` is the DexModel's one InferenceService (the version the route
    left is deleted once the Gateway applied it), and returns it."""
    from dex_testing.devcluster import eventually

    eventually(
        lambda: owned_isvcs(kubeconfig, namespace, name) == [isvc],
        timeout=timeout,
        what=f"{name}: only InferenceService {isvc}",
    )
    return dict(get_json(kubeconfig, "isvc", isvc, "-n", namespace))


def mlflow_post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One call of MLflow's REST API (``/api/2.0/mlflow/<path>``), as the training pipeline's
    client makes it."""
    resp = httpx.post(f"{url}/api/2.0/mlflow/{path}", json=body, timeout=10)
    resp.raise_for_status()
    return dict(resp.json())


@contextmanager
def scratch_namespace(kubeconfig: Path, prefix: str) -> Iterator[str]:
    """A new namespace, deleted afterwards; any operator is gone by then, so DexModel
    finalizers are dropped first or the namespace could never terminate."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubectl(kubeconfig, "create", "namespace", name)
    try:
        yield name
    finally:
        listed = kubectl(kubeconfig, "get", "dm", "-n", name, "-o", "name", check=False)
        for ref in listed.stdout.split():
            kubectl(
                kubeconfig,
                "patch",
                ref,
                "-n",
                name,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
        kubectl(kubeconfig, "delete", "namespace", name, "--wait=false", check=False)
