"""The KFP UI as users see their DexPipelines: KFP 2.17's own UI (built from its source by
``make kfp-ui``) served against the real API server, opened in a real headless Chromium.
A drift crossing makes the operator start a run; the UI lists the DexPipeline's pipeline with
its DAG, and the page ``status.lastRun.link`` names shows that run in the state the
DexPipeline's status reports.

No Argo controller runs in this tier: the run's Workflow is marked Succeeded by the test
(Argo's part, through the real Workflow object); KFP's persistence agent carries it to the run.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opkit import (
    DriftEndpoint,
    apply,
    dexpipeline,
    finish_workflow,
    get_json,
    kubectl,
    promoted_dexmodel,
)

from dex_pipelines.catalog import COMPILED_DIR
from dex_testing.browser import Browser, MissingBrowserError, find_chromium
from dex_testing.devcluster import eventually
from dex_testing.kfp_backend import KFPBackend
from dex_testing.kfp_ui import KFPUI
from dex_testing.kserve_standin import KServeStandIn

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    try:
        find_chromium()
    except MissingBrowserError as exc:
        pytest.fail(str(exc))  # never a skip: this test exists to open the real UI
    with Browser(tmp_path_factory.mktemp("browser")) as opened:
        yield opened


def dag_tasks() -> list[str]:
    """The names the UI gives the shipped training pipeline's tasks (their ``taskInfo``),
    from its compiled package."""
    package = yaml.safe_load((COMPILED_DIR / "training.yaml").read_text())
    return sorted(t["taskInfo"]["name"] for t in package["root"]["dag"]["tasks"].values())


def test_the_kfp_ui_shows_the_dexpipeline_dag_and_its_run_in_the_state_status_reports(
    kubeconfig: Path,
    namespace: str,
    kfp_backend: KFPBackend,
    kfp_ui: KFPUI,
    operator_factory: Any,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
    browser: Browser,
    tmp_path: Path,
) -> None:
    operator_factory(
        DEX_KFP_URL=kfp_backend.url,
        DEX_KFP_UI_URL=kfp_ui.url,
        # Each handler's outcome in its log: one CI run saw this DexPipeline's deletion take
        # over 60 s (not seen locally; the log at INFO said nothing).
        DEX_LOG_LEVEL="DEBUG",
        DEX_PIPELINE_SYNC_SECONDS="1",
        DEX_NAMESPACES=json.dumps([namespace]),
    )
    model, name, experiment = "churn-ui", "retrain-ui", f"dex-{uuid.uuid4().hex[:6]}"
    version = promoted_dexmodel(kubeconfig, namespace, model, "s3://models/churn/1")
    drift.set(model, version, 0.6)
    obj = dexpipeline(
        namespace, name, experiment,
        triggers=[{"dexModel": model, "threshold": 0.3, "cooldown": "1h"}],
    )  # fmt: skip
    del obj["spec"]["schedule"]
    apply(kubeconfig, obj)

    def last_run(state: str | None = None) -> dict[str, Any] | None:
        status = get_json(kubeconfig, "dexpipeline", name, "-n", namespace).get("status") or {}
        last = status.get("lastRun") or {}
        return last if last.get("id") and (state is None or last.get("state") == state) else None

    run = eventually(last_run, timeout=60, interval=0.3, what="the drift run in status.lastRun")
    finish_workflow(kubeconfig, run["id"])
    run = eventually(
        lambda: last_run("SUCCEEDED"), timeout=60, interval=0.5, what="status.lastRun SUCCEEDED"
    )
    status = get_json(kubeconfig, "dexpipeline", name, "-n", namespace)["status"]
    run_name = f"{namespace}.{name}.drift-{model}-1"
    assert run["link"] == f"{kfp_ui.url}/#/runs/details/{run['id']}"

    try:
        # The pipeline list, then the pipeline as a user clicks through to it: its DAG.
        browser.open(f"{kfp_ui.url}/#/pipelines")
        browser.wait_for_text("dex-training")
        browser.click("dex-training", selector="a")
        browser.wait_for_text(status["pipelineVersion"], *dag_tasks())

        # The run page the DexPipeline's status links to: the run's DAG, and in its details
        # the state status.lastRun reports.
        browser.open(run["link"])
        browser.wait_for_text(run_name, *dag_tasks())
        browser.click("Detail")
        details = browser.wait_for_text("Run details", run["id"])
        assert re.search(r"\bStatus\s+Succeeded\b", details), details
        assert "drift share 0.600 of DexModel churn-ui crossed 0.3" in details
    except BaseException:
        shot = browser.screenshot(tmp_path / "kfp-ui.png")
        (tmp_path / "kfp-ui.txt").write_text(browser.text())
        print(f"the page when it failed: {shot} and its text kfp-ui.txt")
        raise
    finally:
        # Not waited on: deletion is test_operator_pipelines' subject, the UI is this test's.
        kubectl(kubeconfig, "delete", "dexpipeline", name, "-n", namespace, "--wait=false")
        kubectl(kubeconfig, "delete", "dm", model, "-n", namespace, "--wait=false")
