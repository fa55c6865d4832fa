"""Where the real Argo Workflows v4.0.5 binaries (``make argo-workflows``) are on this machine.

``tools/argo-workflows/build.sh`` builds the workflow controller and argoexec (the executor
every Workflow pod runs) from Argo's Go module and copies the module's minimal CRDs next to
them; nothing of Argo is committed. This module only finds that build: the controller
harness (the controller as a host process against a dev node, its
``workflow-controller-configmap`` and the executor image) is not written yet.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pydantic import BaseModel

from dex_testing import SOURCE_ROOT

BUILD_SCRIPT = SOURCE_ROOT / "tools" / "argo-workflows" / "build.sh"
VERSION = "v4.0.5"


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
