"""Every overlay, and the samples, server-side applied in dry-run against the real
kube-apiserver with the real CRDs a DEX cluster has: DEX's own, and KServe's and Kubeflow
Pipelines' (with Argo Workflows'), installed from the releases `make kserve` and `make kfp`
build, as their own installs would. Every object passes the API server's validation (schemas,
the CRDs' CEL rules, RBAC escalation checks) the way Argo CD's ServerSideApply sync would send
it, and nothing is created."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dex_testing import SOURCE_ROOT
from dex_testing.crds import wait_established
from dex_testing.devcluster import eventually
from dex_testing.kfp_backend import MissingKFPError, find_kfp
from dex_testing.kserve_manager import MissingKServeError, find_kserve

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

REPO = SOURCE_ROOT
OVERLAYS = REPO / "kustomize" / "overlays"
ENVS = ("dev", "staging", "prod")
SAMPLES = REPO / "manifests" / "samples"
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


def render(folder: Path) -> list[dict[str, Any]]:
    binary = shutil.which("kubectl") or pytest.fail("kubectl not on PATH")
    out = subprocess.run(
        [binary, "kustomize", str(folder)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _prerequisite_crds() -> list[Path]:
    """KServe's and KFP's CRD folders, as built here; in CI a missing build fails."""
    try:
        return [find_kserve().crd, find_kfp().crds]
    except (MissingKServeError, MissingKFPError) as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {env: render(OVERLAYS / env) for env in ENVS} | {"samples": render(SAMPLES)}


@pytest.fixture(scope="module")
def kubeconfig(kube_cluster: Any, rendered: dict[str, list[dict[str, Any]]]) -> Path:
    """What must exist for a dry run of the rest, applied for real (a dry run creates nothing
    later objects could refer to): KServe's and KFP's CRDs, the overlays' CRDs and
    namespaces, KServe's namespace and the samples' namespace."""
    path = Path(kube_cluster.kubeconfig)
    kserve_crds, kfp_crds = _prerequisite_crds()
    ok(kubectl(path, "apply", "--server-side", "--force-conflicts", "-k", str(kserve_crds)))
    ok(kubectl(path, "apply", "--server-side", "--force-conflicts", "-f", str(kfp_crds)))
    prerequisites = [
        o for o in rendered["dev"] if o["kind"] in ("CustomResourceDefinition", "Namespace")
    ]
    for namespace in ("kserve", "dex"):
        prerequisites.append(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
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
    wait_established(
        path,
        [
            "dexmodels.dex.dataenginex.io",
            "dexpipelines.dex.dataenginex.io",
            "inferenceservices.serving.kserve.io",
            "workflows.argoproj.io",
            "scheduledworkflows.kubeflow.org",
        ],
    )
    eventually(
        lambda: (
            "dexpipelines" in ok(kubectl(path, "api-resources", "--api-group=dex.dataenginex.io"))
        ),
        timeout=30,
        what="DEX kinds in discovery",
    )
    return path


def dry_run(kubeconfig: Path, objs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    return kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--dry-run=server",
        f"--field-manager={MANAGER}",
        "-f",
        "-",
        stdin=dump(objs),
    )


@pytest.mark.parametrize("env", [*ENVS, "samples"])
def test_overlay_passes_server_side_dry_run(
    kubeconfig: Path, rendered: dict[str, list[dict[str, Any]]], env: str
) -> None:
    objs = rendered[env]
    out = ok(dry_run(kubeconfig, objs))
    applied = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(objs), out
    for obj in objs:
        assert any(f"/{obj['metadata']['name']} " in line for line in applied), obj["metadata"]
    # Nothing beyond the prerequisites was created.
    missing = kubectl(kubeconfig, "get", "deployment", "dex-monitor", "-n", "dex-system")
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr


def test_dry_run_rejects_what_the_crd_forbids(
    kubeconfig: Path, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    # Guards the test above: the dry run really validates against the CRDs' CEL rules.
    (model,) = [
        o
        for o in rendered["samples"]
        if o["kind"] == "DexModel" and o["metadata"]["name"] == "churn"
    ]
    broken = yaml.safe_load(yaml.safe_dump(model))
    broken["spec"]["rollout"]["steps"] = [50, 10]
    result = dry_run(kubeconfig, [broken])
    assert result.returncode != 0
    assert "spec.rollout.steps must be strictly increasing" in result.stderr
