"""Authorization is real RBAC, garbage collection is the real controller, and kubectl works
through the kubeconfig the harness writes."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from dex_testing.devcluster import eventually, find_assets, service_account_kubeconfig

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]


@pytest.fixture
def namespace(kube_api: Any) -> Iterator[str]:
    name = f"cp-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def _status(call: Any) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_service_account_is_forbidden_until_bound(
    kube_cluster: Any, kube_api: Any, namespace: str, tmp_path: Path
) -> None:
    sa_kubeconfig = service_account_kubeconfig(
        kube_cluster.kubeconfig, namespace=namespace, name="reader", out=tmp_path / "sa.kubeconfig"
    )
    sa_client = config.new_client_from_config(config_file=str(sa_kubeconfig))
    try:
        as_sa = client.CoreV1Api(sa_client)

        def list_configmaps() -> Any:
            return as_sa.list_namespaced_config_map(namespace)

        # Authenticated (not 401) but not authorized: RBAC, not a permissive authorizer.
        assert _status(list_configmaps) == 403

        client.RbacAuthorizationV1Api(kube_api).create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "reader-view"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "view",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
        )
        # The authorizer reads bindings from an informer cache: allowed shortly, not instantly.
        eventually(lambda: _status(list_configmaps) == 200, timeout=30, what="RBAC grant seen")

        # The grant is exactly `view`: still no writes, and nothing in other namespaces.
        def create_configmap() -> Any:
            return as_sa.create_namespaced_config_map(namespace, {"metadata": {"name": "nope"}})

        assert _status(create_configmap) == 403
        assert _status(lambda: as_sa.list_namespaced_config_map("default")) == 403
    finally:
        sa_client.close()


def test_deleting_owner_garbage_collects_dependents(
    kube_cluster: Any, kube_api: Any, namespace: str
) -> None:
    if kube_cluster.started is not None:
        running = [p.name for p in kube_cluster.started.processes]
        assert "kube-controller-manager" in running, (
            "no kube-controller-manager in the assets folder: nothing garbage-collects; "
            "run `make envtest` (builds it) or add it to KUBEBUILDER_ASSETS"
        )
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner.metadata.name,
        "uid": owner.metadata.uid,
    }
    for i in range(3):
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": f"dependent-{i}", "ownerReferences": [ref]}}
        )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "unowned"}})

    core.delete_namespaced_config_map("owner", namespace)

    def remaining() -> list[str] | None:
        names = sorted(cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items)
        mine = [n for n in names if n.startswith(("dependent-", "unowned"))]
        return mine if mine == ["unowned"] else None

    assert eventually(remaining, timeout=60, what="dependents garbage-collected") == ["unowned"]


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    kubectl = find_assets().kubectl
    assert kubectl is not None, "kubectl not found (in KUBEBUILDER_ASSETS or on PATH)"
    done = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_kubectl_works_through_the_written_kubeconfig(kube_cluster: Any, namespace: str) -> None:
    names = _kubectl(kube_cluster.kubeconfig, "get", "ns", "-o", "name").split()
    assert {"namespace/default", "namespace/kube-system", f"namespace/{namespace}"} <= set(names)

    manifest = f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: applied
  namespace: {namespace}
data:
  answer: "42"
"""
    out = _kubectl(
        kube_cluster.kubeconfig,
        "apply",
        "--server-side",
        "--field-manager=dex-kubectl",
        "-f",
        "-",
        stdin=manifest,
    )
    assert "configmap/applied serverside-applied" in out
    got = _kubectl(
        kube_cluster.kubeconfig,
        "get",
        "configmap",
        "applied",
        "-n",
        namespace,
        "-o",
        "jsonpath={.data.answer} {.metadata.managedFields[0].manager}",
    )
    assert got == "42 dex-kubectl"
