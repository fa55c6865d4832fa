"""The real Argo Workflows v4.0.5 (``make argo-workflows``): where its build is, its executor
image, and its workflow controller run from this machine against a cluster with a node.

``tools/argo-workflows/build.sh`` builds the workflow controller and argoexec (the executor
every Workflow pod runs: its ``init`` and ``wait`` containers, and ``argoexec emissary``
wrapping each main container) from Argo's Go module and copies the module's minimal CRDs
next to them; nothing of Argo is committed. argoexec is static, so its image holds the one
binary (``dex_testing.devcluster.images``).

``WorkflowController`` runs the controller as a host process, as its in-cluster Deployment
would run it: namespaced to the namespace it watches, its ``workflow-controller-configmap``
there, leader election off (one replica). Its health endpoint is Argo's fixed ``:6060`` (no
flag moves it, so it listens on every interface of this machine); its metrics are off.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from dex_testing import SOURCE_ROOT
from dex_testing.crds import run_kubectl
from dex_testing.devcluster.images import ImageSpec, command_image
from dex_testing.lifecycle import Started
from dexctl.processes import Child, ProcessRecord

log = logging.getLogger(__name__)

BUILD_SCRIPT = SOURCE_ROOT / "tools" / "argo-workflows" / "build.sh"
VERSION = "v4.0.5"
EXECUTOR_IMAGE = f"dex.local/argoexec:{VERSION}"
CONFIGMAP = "workflow-controller-configmap"
HEALTHZ = "http://127.0.0.1:6060/healthz"  # fixed in Argo's main.go


class MissingArgoWorkflowsError(RuntimeError):
    """The controller or argoexec (or the CRDs) is not built."""


class ArgoWorkflowsAssets(BaseModel):
    folder: Path
    controller: Path  # bin/workflow-controller
    argoexec: Path  # bin/argoexec
    crds: Path  # manifests/base/crds/minimal of the module


def argo_workflows_folder() -> Path:
    """The folder build.sh uses, computed by build.sh itself so there is one definition."""
    if explicit := os.environ.get("DEX_ARGO_WORKFLOWS_DIR"):
        return Path(explicit)
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def find_argo_workflows() -> ArgoWorkflowsAssets:
    folder = argo_workflows_folder()
    assets = ArgoWorkflowsAssets(
        folder=folder,
        controller=folder / "bin" / "workflow-controller",
        argoexec=folder / "bin" / "argoexec",
        crds=folder / "crds",
    )
    missing = [str(p) for p in (assets.controller, assets.argoexec) if not os.access(p, os.X_OK)]
    if not assets.crds.is_dir():
        missing.append(str(assets.crds))
    if missing:
        raise MissingArgoWorkflowsError(
            f"Argo Workflows {VERSION} is not built: missing {', '.join(missing)}. Run "
            "`make argo-workflows` (builds the workflow controller and argoexec from Argo's Go "
            "module, once per machine) or point DEX_ARGO_WORKFLOWS_DIR at a folder holding them."
        )
    return assets


def executor_image(assets: ArgoWorkflowsAssets) -> ImageSpec:
    """argoexec as an image: Argo's pod specs run it by name (``argoexec init``), as the user
    of Argo's own argoexec image (pods may demand runAsNonRoot)."""
    return command_image(EXECUTOR_IMAGE, assets.argoexec, user="8737")


def controller_configmap(namespace: str) -> dict[str, Any]:
    """The controller's configuration: executor image by name only (the node has it; no
    registry to pull from), metrics off (they would listen on every interface)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": namespace},
        "data": {
            "executor": json.dumps({"imagePullPolicy": "IfNotPresent"}),
            "metricsConfig": json.dumps({"enabled": False}),
        },
    }


class WorkflowController(Started):
    """Argo's workflow controller for ``namespace`` of the cluster ``kubeconfig`` names; a
    context manager. Its log is ``work/workflow-controller.log``."""

    def __init__(
        self,
        kubeconfig: Path,
        work: Path,
        namespace: str,
        *,
        timeout: float = 60.0,
        detached: bool = False,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.work = Path(work)
        self.namespace = namespace
        self.timeout = timeout
        self.detached = detached
        self.child: Child | None = None

    @property
    def log(self) -> Path:
        return self.work / "workflow-controller.log"

    def start(self) -> None:
        assets = find_argo_workflows()
        self.work.mkdir(parents=True, exist_ok=True)
        run_kubectl(
            self.kubeconfig,
            "apply", "--server-side", "--force-conflicts", "-f", "-",
            stdin=json.dumps(controller_configmap(self.namespace)),
        )  # fmt: skip
        self.child = Child(
            "workflow-controller",
            [
                str(assets.controller),
                f"--kubeconfig={self.kubeconfig}",
                f"--namespace={self.namespace}",
                "--namespaced",
                f"--managed-namespace={self.namespace}",
                f"--configmap={CONFIGMAP}",
                f"--executor-image={EXECUTOR_IMAGE}",
                "--executor-image-pull-policy=IfNotPresent",
            ],
            log=self.log,
            env={**os.environ, "LEADER_ELECTION_DISABLE": "true"},
            detached=self.detached,
        )
        self.child.wait_ready(self._healthy, timeout=self.timeout, what=f"healthy ({HEALTHZ})")
        log.info("Argo workflow controller pid=%d for namespace %s", self.child.pid, self.namespace)

    @staticmethod
    def _healthy() -> bool:
        try:
            return httpx.get(HEALTHZ, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def records(self) -> list[ProcessRecord]:
        return [] if self.child is None else [self.child.record]

    def stop(self) -> None:
        if self.child is not None:
            # It ignores SIGTERM (as KFP's API server does): a short grace, then SIGKILL.
            self.child.stop(grace=2.0)
            self.child = None
