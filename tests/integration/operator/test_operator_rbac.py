"""The operator runs with exactly manifests/rbac: its ServiceAccount's token (TokenRequest),
the shipped ClusterRole and kserve Role, through a full canary rollout. The deployment mode
comes from KServe's inferenceservice-config ConfigMap (Knative here), read under that Role.
The KServe controller is stood in for by ``KServeStandIn`` (status patched via the API)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from opkit import (
    RBAC_DIR,
    DriftEndpoint,
    apply,
    dexmodel,
    final_history,
    get_json,
    kubectl,
    uri_version,
)

from dex_testing.devcluster import eventually, service_account_kubeconfig
from dex_testing.kserve_standin import KServeStandIn

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

SA = "system:serviceaccount:dex-system:dex-operator"
V1, V2 = "s3://models/rbac/1", "s3://models/rbac/2"


@pytest.fixture(scope="module")
def sa_kubeconfig(
    kubeconfig: Path, crds: None, gateway: object, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    # (gateway: the Gateway API CRDs, so `kubectl auth can-i ... httproutes` resolves them.)
    for ns in ("dex-system", "kserve"):
        kubectl(kubeconfig, "create", "namespace", ns, check=False)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": "kserve"},
        "data": {"deploy": json.dumps({"defaultDeploymentMode": "Knative"})},
    }
    kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(configmap))
    kubectl(kubeconfig, "apply", "-k", str(RBAC_DIR))
    eventually(
        lambda: (
            kubectl(
                kubeconfig,
                "auth",
                "can-i",
                "watch",
                "dexmodels.dex.dataenginex.io",
                f"--as={SA}",
                "--all-namespaces",
                check=False,
            ).stdout.strip()
            == "yes"
        ),
        timeout=30,
        what="ClusterRole binding visible to RBAC",
    )
    return service_account_kubeconfig(
        kubeconfig,
        namespace="dex-system",
        name="dex-operator",
        out=tmp_path_factory.mktemp("sa") / "operator.kubeconfig",
    )


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("patch", "dexmodels.dex.dataenginex.io/status", "yes"),
        ("create", "inferenceservices.serving.kserve.io", "yes"),
        # A version's InferenceService goes once the route left it; never the DexModel.
        ("delete", "inferenceservices.serving.kserve.io", "yes"),
        ("delete", "dexmodels.dex.dataenginex.io", "no"),
        ("patch", "httproutes.gateway.networking.k8s.io", "yes"),
        ("update", "gateways.gateway.networking.k8s.io", "no"),
        ("update", "dexmodels.dex.dataenginex.io", "no"),
        ("watch", "pods", "yes"),
        ("get", "pods", "no"),
        ("delete", "pods", "no"),
        ("list", "secrets", "no"),
        ("list", "configmaps", "no"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", "no"),
    ],
)
def test_cluster_role_is_least_privilege(
    kubeconfig: Path, sa_kubeconfig: Path, verb: str, resource: str, allowed: str
) -> None:
    result = kubectl(kubeconfig, "auth", "can-i", verb, resource, f"--as={SA}", "-A", check=False)
    assert result.stdout.strip() == allowed


def test_full_rollout_with_service_account_credentials(
    kubeconfig: Path,
    sa_kubeconfig: Path,
    namespace: str,
    operator_factory: object,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
) -> None:
    op = operator_factory(kubeconfig_path=sa_kubeconfig)  # type: ignore[operator]
    name = "rbac"
    drift.set(name, uri_version(V2), 0.02)
    obj = dexmodel(name, namespace, storage_uri=V1, steps=[10, 50])
    del obj["spec"]["serving"]["deploymentMode"]  # the cluster default decides
    assert apply(kubeconfig, obj).returncode == 0

    def phase() -> str | None:
        return get_json(kubeconfig, "dm", name, "-n", namespace).get("status", {}).get("phase")

    eventually(lambda: phase() == "Promoted", timeout=30, what="first promotion")
    isvc = get_json(kubeconfig, "isvc", name, "-n", namespace)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    kubectl(
        kubeconfig,
        "patch",
        "dm",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        f'{{"spec":{{"model":{{"storageUri":"{V2}"}}}}}}',
    )
    eventually(lambda: phase() == "Progressing", timeout=15, what="rollout start")
    eventually(lambda: phase() == "Promoted", timeout=40, what="promotion")
    assert final_history(kserve, namespace, name) == [None, 0, 10, 50, None]
    events = get_json(
        kubeconfig, "events", "-n", namespace, f"--field-selector=involvedObject.name={name}"
    )["items"]
    assert any(e["reason"] == "Promoted" for e in events)
    # The operator watches the whole cluster: other tests' namespaces being deleted answer 403
    # NamespaceTerminating to its Event posts. Those are not RBAC denials; anything else is.
    log = "\n".join(
        line for line in op.log_path.read_text().splitlines() if "NamespaceTerminating" not in line
    )
    assert "Forbidden" not in log
    assert not re.search(r"\b403\b", log)  # a status code, not digits of a timestamp
