"""The operator's KFP client against the real API server: every call a DexPipeline makes is
safe to repeat (content-hash versions, run keys, a 409 from a concurrent writer handled)."""

from __future__ import annotations

import uuid

import pytest

from dex_operator.kfp import KfpClient, KfpError, KfpUnreachableError, content_version
from dex_pipelines.catalog import COMPILED_DIR
from dex_testing.kfp_backend import KFPBackend
from dexctl.processes import free_ports

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

PACKAGE = (COMPILED_DIR / "training.yaml").read_bytes()


def test_versions_are_uploaded_once_per_content(kfp_backend: KFPBackend) -> None:
    pipeline = f"dex-training-{uuid.uuid4().hex[:6]}"
    with KfpClient(kfp_backend.url) as kfp:
        first = kfp.ensure_version(pipeline, PACKAGE)
        assert first.name == content_version(pipeline, PACKAGE)
        assert kfp.ensure_version(pipeline, PACKAGE) == first
        # The pipeline holds DEX's content versions only (no version named like the pipeline).
        listed = kfp._call("GET", f"/pipelines/{first.pipeline_id}/versions")
        assert [v["display_name"] for v in listed["pipeline_versions"]] == [first.name]
        # Another writer uploaded the pipeline first: its upload's 409 is not an error.
        racer = f"{pipeline}-race"
        with KfpClient(kfp_backend.url) as other:
            other._upload("/pipelines/upload", {"name": racer}, PACKAGE)
        assert kfp.ensure_version(racer, PACKAGE).pipeline_id == kfp.pipeline_id(racer)
        changed = PACKAGE + b"\n# another build\n"
        second = kfp.ensure_version(pipeline, changed)
        assert second.pipeline_id == first.pipeline_id
        assert second.pipeline_version_id != first.pipeline_version_id


def test_runs_and_recurring_runs_are_found_by_their_key(kfp_backend: KFPBackend) -> None:
    with KfpClient(kfp_backend.url) as kfp:
        experiment_name = f"dex-{uuid.uuid4().hex[:6]}"
        experiment = kfp.ensure_experiment(experiment_name)
        assert kfp.ensure_experiment(experiment_name) == experiment
        version = kfp.ensure_version("dex-training-runs", PACKAGE)
        params = {"entity_source": "/data/labels.parquet"}
        run, created = kfp.ensure_run(
            experiment_id=experiment, version=version, display_name="churn-retrain.drift-1",
            parameters=params, description="drift 0.42 > 0.30",
        )  # fmt: skip
        assert created
        again, created = kfp.ensure_run(
            experiment_id=experiment, version=version, display_name="churn-retrain.drift-1",
            parameters=params, description="drift 0.42 > 0.30",
        )  # fmt: skip
        assert (again.run_id, created) == (run.run_id, False)
        assert [r.run_id for r in kfp.runs(experiment)] == [run.run_id]

        recurring = kfp.create_recurring_run(
            experiment_id=experiment, version=version, display_name="churn-retrain",
            description="schedule", cron="0 0 3 * * *", parameters=params, enabled=True,
        )  # fmt: skip
        found = kfp.find_recurring_run(experiment, "churn-retrain")
        assert found is not None
        assert (found.recurring_run_id, found.status) == (recurring.recurring_run_id, "ENABLED")
        kfp.set_recurring_run_enabled(recurring.recurring_run_id, False)
        disabled = kfp.find_recurring_run(experiment, "churn-retrain")
        assert disabled is not None
        assert disabled.status == "DISABLED"
        kfp.delete_recurring_run(recurring.recurring_run_id)
        kfp.delete_recurring_run(recurring.recurring_run_id)  # already gone: fine
        assert kfp.find_recurring_run(experiment, "churn-retrain") is None

        with pytest.raises(KfpError) as refused:
            kfp.ensure_run(
                experiment_id=experiment, version=version, display_name="no-source",
                parameters={}, description="",
            )  # fmt: skip
        assert refused.value.status is not None
        assert 400 <= refused.value.status < 500
        assert "entity_source" in str(refused.value)


def test_an_unreachable_kfp_is_its_own_error() -> None:
    (port,) = free_ports(1)
    with (
        KfpClient(f"http://127.0.0.1:{port}", timeout=2) as kfp,
        pytest.raises(KfpUnreachableError),
    ):
        kfp.pipeline_id("dex-training")
