"""The rendered dev overlay, server-side applied in dry-run against the real kube-apiserver:
every object passes the API server's validation (schemas, the CRDs' CEL rules, RBAC
escalation checks) the way Argo CD's ServerSideApply sync would send it, and nothing is
created."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dex_testing import SOURCE_ROOT
from dex_testing.devcluster import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

REPO = SOURCE_ROOT
DEV = REPO / "kustomize" / "overlays" / "dev"
MANAGER = "dex-gitops-test"


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl not on PATH: install it or run `make envtest`")
    return subprocess.run(
        [binary, f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def dump(objs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False)


@pytest.fixture(scope="module")
def dev_objects() -> list[dict[str, Any]]:
    binary = shutil.which("kubectl") or pytest.fail("kubectl not on PATH")
    out = subprocess.run(
        [binary, "kustomize", str(DEV)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def kubeconfig(kube_cluster: Any, dev_objects: list[dict[str, Any]]) -> Path:
    """What must exist for a dry run of the rest: the overlay's CRDs and namespaces (applied
    for real: a dry-run creates nothing later objects could refer to), and KServe's
    namespace, which the overlay expects KServe to have created."""
    path = Path(kube_cluster.kubeconfig)
    prerequisites = [
        o for o in dev_objects if o["kind"] in ("CustomResourceDefinition", "Namespace")
    ]
    prerequisites.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kserve"}})
    ok(
        kubectl(
            path,
            "apply",
            "--server-side",
            f"--field-manager={MANAGER}",
            "-f",
            "-",
            stdin=dump(prerequisites),
        )
    )
    for crd in ("dexmodels.dex.dataenginex.io", "dexpipelines.dex.dataenginex.io"):
        ok(kubectl(path, "wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s"))
    eventually(
        lambda: (
            "dexpipelines" in ok(kubectl(path, "api-resources", "--api-group=dex.dataenginex.io"))
        ),
        timeout=30,
        what="DEX kinds in discovery",
    )
    return path


def test_dev_overlay_passes_server_side_dry_run(
    kubeconfig: Path, dev_objects: list[dict[str, Any]]
) -> None:
    out = ok(
        kubectl(
            kubeconfig,
            "apply",
            "--server-side",
            "--dry-run=server",
            f"--field-manager={MANAGER}",
            "-f",
            "-",
            stdin=dump(dev_objects),
        )
    )
    applied = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(dev_objects), out
    for obj in dev_objects:
        assert any(f"/{obj['metadata']['name']} " in line for line in applied), obj["metadata"]
    # Nothing beyond the prerequisites was created.
    missing = kubectl(kubeconfig, "get", "dexmodel", "churn", "-n", "dex")
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr


def test_dry_run_rejects_what_the_crd_forbids(
    kubeconfig: Path, dev_objects: list[dict[str, Any]]
) -> None:
    # Guards the test above: the dry run really validates against the CRDs' CEL rules.
    (model,) = [
        o for o in dev_objects if o["kind"] == "DexModel" and o["metadata"]["name"] == "churn"
    ]
    broken = yaml.safe_load(yaml.safe_dump(model))
    broken["spec"]["rollout"]["steps"] = [50, 10]
    result = kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--dry-run=server",
        f"--field-manager={MANAGER}",
        "-f",
        "-",
        stdin=dump([broken]),
    )
    assert result.returncode != 0
    assert "spec.rollout.steps must be strictly increasing" in result.stderr
