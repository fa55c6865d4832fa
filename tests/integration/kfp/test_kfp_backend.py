"""The KFP backend in the test stack answers as KFP does for the calls a DexPipeline makes:
upload a compiled DEX pipeline (a second upload under the same name is a 409), add a version,
refuse a run missing a required parameter, and turn a run into an Argo Workflow labelled with
the run id."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from dex_pipelines.catalog import COMPILED_DIR
from dex_testing.crds import run_kubectl
from dex_testing.kfp_backend import NAMESPACE, KFPBackend
from dexctl.polling import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

TRAINING = COMPILED_DIR / "training.yaml"
API = "/apis/v2beta1"


def upload(http: httpx.Client, name: str) -> httpx.Response:
    with TRAINING.open("rb") as package:
        return http.post(
            f"{API}/pipelines/upload",
            params={"name": name},
            files={"uploadfile": ("training.yaml", package, "application/x-yaml")},
        )


def workflows(kubeconfig: Path, run_id: str) -> list[dict[str, Any]]:
    done = run_kubectl(
        kubeconfig, "get", "workflows.argoproj.io", "-n", NAMESPACE,
        "-l", f"pipeline/runid={run_id}", "-o", "json",
    )  # fmt: skip
    items: list[dict[str, Any]] = json.loads(done.stdout)["items"]
    return items


def test_upload_version_and_run_become_an_argo_workflow(kfp_backend: KFPBackend) -> None:
    name = f"dex-training-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=kfp_backend.url, timeout=30) as http:
        assert http.get(f"{API}/healthz").status_code == 200
        first = upload(http, name)
        assert first.status_code == 200, first.text
        pipeline = first.json()
        assert pipeline["display_name"] == name
        again = upload(http, name)
        assert again.status_code == 409, again.text

        with TRAINING.open("rb") as package:
            version = http.post(
                f"{API}/pipelines/upload_version",
                params={"pipelineid": pipeline["pipeline_id"], "name": f"{name}-v2"},
                files={"uploadfile": ("training.yaml", package, "application/x-yaml")},
            )
        assert version.status_code == 200, version.text
        reference = {
            "pipeline_id": pipeline["pipeline_id"],
            "pipeline_version_id": version.json()["pipeline_version_id"],
        }

        refused = http.post(
            f"{API}/runs",
            json={"display_name": "no-source", "pipeline_version_reference": reference},
        )
        assert 400 <= refused.status_code < 500, refused.text
        assert "entity_source" in refused.text

        created = http.post(
            f"{API}/runs",
            json={
                "display_name": "retrain",
                "pipeline_version_reference": reference,
                "runtime_config": {"parameters": {"entity_source": "/data/labels.parquet"}},
            },
        )
        assert created.status_code == 200, created.text
        run = created.json()
        assert run["state"] in {"PENDING", "RUNNING"}, run
        got = http.get(f"{API}/runs/{run['run_id']}").json()
        assert got["runtime_config"]["parameters"]["entity_source"] == "/data/labels.parquet"

    found = eventually(
        lambda: workflows(kfp_backend.kubeconfig, run["run_id"]),
        timeout=60,
        what="the run's Argo Workflow",
    )
    assert len(found) == 1


def test_agents_report_workflow_state_and_schedule_runs(kfp_backend: KFPBackend) -> None:
    """The persistence agent turns a Workflow's status into its run's state (the Workflow's
    status is patched here, playing the Argo controller, which does not run in this tier);
    the ScheduledWorkflow controller turns a recurring run's cron into runs."""
    name = f"dex-training-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=kfp_backend.url, timeout=30) as http:
        pipeline = upload(http, name).json()
        version = http.get(f"{API}/pipelines/{pipeline['pipeline_id']}/versions").json()
        reference = {
            "pipeline_id": pipeline["pipeline_id"],
            "pipeline_version_id": version["pipeline_versions"][0]["pipeline_version_id"],
        }
        parameters = {"parameters": {"entity_source": "/data/labels.parquet"}}
        run = http.post(
            f"{API}/runs",
            json={"display_name": "r", "pipeline_version_reference": reference,
                  "runtime_config": parameters},
        ).json()  # fmt: skip
        (workflow,) = eventually(
            lambda: workflows(kfp_backend.kubeconfig, run["run_id"]),
            timeout=60,
            what="the run's Workflow",
        )
        kubectl_status(kfp_backend.kubeconfig, workflow["metadata"]["name"], "Succeeded")
        eventually(
            lambda: http.get(f"{API}/runs/{run['run_id']}").json().get("state") == "SUCCEEDED",
            timeout=60,
            what="the run SUCCEEDED in KFP (persistence agent)",
        )

        recurring = http.post(
            f"{API}/recurringruns",
            json={"display_name": "every-5s", "pipeline_version_reference": reference,
                  "runtime_config": parameters, "mode": "ENABLE", "max_concurrency": "10",
                  "trigger": {"cron_schedule": {"cron": "*/5 * * * * *"}}, "no_catchup": True},
        ).json()  # fmt: skip
        assert "recurring_run_id" in recurring, recurring

        def scheduled() -> list[dict[str, Any]]:
            runs = http.get(f"{API}/runs", params={"page_size": 100}).json().get("runs") or []
            return [r for r in runs if r.get("recurring_run_id") == recurring["recurring_run_id"]]

        eventually(scheduled, timeout=60, what="a run of the recurring run (ScheduledWorkflow)")
        http.delete(f"{API}/recurringruns/{recurring['recurring_run_id']}")


def kubectl_status(kubeconfig: Path, workflow: str, phase: str) -> None:
    patch = {"status": {"phase": phase, "startedAt": "2026-01-01T00:00:00Z",
                        "finishedAt": "2026-01-01T00:01:00Z"}}  # fmt: skip
    run_kubectl(
        kubeconfig, "patch", "workflows.argoproj.io", workflow, "-n", NAMESPACE,
        "--type=merge", "-p", json.dumps(patch),
    )  # fmt: skip
