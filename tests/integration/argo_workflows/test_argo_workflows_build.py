"""`make argo-workflows` leaves a runnable Argo Workflows v4.0.5: the workflow controller and
argoexec start and answer, and the CRDs the controller watches are next to them."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from dex_testing.argo_workflows import MissingArgoWorkflowsError, find_argo_workflows

pytestmark = [pytest.mark.integration]


def test_controller_argoexec_and_crds_are_built() -> None:
    try:
        assets = find_argo_workflows()
    except MissingArgoWorkflowsError as exc:
        pytest.fail(str(exc))

    # The flags the harness will start the controller with must be this build's.
    controller = subprocess.run(
        [str(assets.controller), "--help"], capture_output=True, text=True, timeout=60
    )
    assert controller.returncode == 0, controller.stderr
    for flag in ("--kubeconfig", "--configmap", "--executor-image", "--namespaced"):
        assert flag in controller.stdout, f"workflow-controller --help lacks {flag}"

    # argoexec is what every Workflow pod runs (init, wait); it must be a working binary.
    argoexec = subprocess.run(
        [str(assets.argoexec), "version"], capture_output=True, text=True, timeout=60
    )
    assert argoexec.returncode == 0, argoexec.stderr
    assert argoexec.stdout.startswith("argoexec: v4.0.5"), argoexec.stdout

    kinds = {
        yaml.safe_load(path.read_text())["spec"]["names"]["kind"]
        for path in assets.crds.glob("*.yaml")
    }
    assert {"Workflow", "WorkflowTemplate", "WorkflowTaskResult"} <= kinds
