"""The training pipeline end to end through kfp.local: every step a real subprocess,
real Feast file offline store, real MLflow tracking + registry on SQLite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dex.contract import FeatureContract
from dexctl.local_runner import PipelineFailedError, default_parameters, run_local

# LocalState comes from this folder's conftest (fixture ``local_state``).
LocalState = Any

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="local-loop")]

TRIALS = 3


def run_training(state: LocalState, **overrides: object) -> None:
    params = {**default_parameters("training", state.settings), "n_trials": TRIALS, **overrides}
    run_local("training", params, state.settings)


def newest(root: Path, task: str, output: str) -> Path:
    runs = sorted(root.glob("dex-training-*"), key=lambda p: p.stat().st_mtime)
    assert runs, f"no training run under {root}"
    path = runs[-1] / task / output
    assert path.exists(), f"{path} missing"
    return path


def test_training_then_retraining_on_drifted_data(local_state: LocalState) -> None:
    import mlflow

    settings = local_state.settings
    run_training(local_state)

    client = local_state.client()
    name = settings.registered_model
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == "1"
    contract = FeatureContract.from_tags(champion.tags)
    assert contract.feature_service == "churn_v1"
    assert contract.feature_refs[0] == "customer_profile:tenure_months"
    assert "customer_ratios:tickets_per_session" in contract.feature_refs
    assert contract.feature_columns == [r.split(":")[1] for r in contract.feature_refs]
    assert (contract.entity_key, contract.label) == ("customer_id", "churned")
    assert champion.tags["dex.decision"] == "champion"

    run = client.get_run(champion.run_id)
    assert run.data.metrics["holdout_roc_auc"] >= 0.72, run.data.metrics
    assert run.data.metrics["holdout_accuracy"] >= 0.75
    # the signature lists exactly the contract's columns, in order
    model_info = mlflow.models.get_model_info(f"models:/{name}/1")
    assert [c["name"] for c in json.loads(model_info.signature.inputs.to_json())] == (
        contract.feature_columns
    )
    # tuning trials are nested runs under the tune parent
    tune_parent = run.data.tags["mlflow.parentRunId"]
    trials = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{tune_parent}'"
    )
    assert len([t for t in trials if t.info.run_name.startswith("trial-")]) == TRIALS

    root = settings.pipeline_root
    html = newest(root, "evaluate-model", "drift_report").read_text()
    assert len(html) > 50_000
    assert "<html" in html.lower()
    decision = newest(root, "register-and-promote", "decision_report").read_text()
    assert "**champion**" in decision
    quality = newest(root, "validate-data", "quality_report").read_text()
    assert "| not_null | customer_id | pass |" in quality

    # A drifted, later batch. An unreachable quality gate makes the decision certain: the
    # new version must be registered as challenger, champion untouched.
    local_state.add_batch(seed=12, drift=0.8, customers=2000, start=local_state.second_batch_start)
    run_training(local_state, min_score=0.999)
    second = client.get_model_version(name, "2")
    assert second.tags["dex.decision"] == "challenger"
    assert "FAILED" in second.tags["dex.reasons"]
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    assert aliases == {"champion": "1", "challenger": "2"}
    assert (
        "| champion (before) | 1 |"
        in newest(root, "register-and-promote", "decision_report").read_text()
    )

    # evaluation: score the champion on the newest data, against its training reference
    eval_params = {**default_parameters("evaluation", settings), "version_or_alias": "champion"}
    run_local("evaluation", eval_params, settings)
    eval_runs = sorted(root.glob("dex-evaluation-*"), key=lambda p: p.stat().st_mtime)
    eval_html = (eval_runs[-1] / "evaluate-registered" / "drift_report").read_text()
    assert len(eval_html) > 50_000

    # promotion: challenger vs champion on the same data; aliases stay consistent either way
    run_local("promotion", default_parameters("promotion", settings), settings)
    promo_runs = sorted(root.glob("dex-promotion-*"), key=lambda p: p.stat().st_mtime)
    report = (promo_runs[-1] / "promote-challenger" / "decision_report").read_text()
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    if "**champion**" in report:
        assert aliases == {"champion": "2"}
    else:
        assert aliases == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(name, "2").tags["dex.decision"] in report


def write_labels(state: LocalState, frame: pd.DataFrame, name: str) -> str:
    path = state.settings.data_dir / name
    frame.to_parquet(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_column", r"column 'churned': column_present"),
        ("null_keys", r"column 'customer_id': not_null \(5 null values\)"),
        ("empty", r"not_empty \(0 rows"),
        ("unknown_service", r"unknown feature service 'churn_v9'.*churn_v1"),
        # The data sets, declared as the task they are not: refused by validation,
        # naming the label column and the rule, before any tuning.
        (
            "regression_as_binary",
            r"column 'churned': classification_label .*declare task: regression",
        ),
        ("three_classes_as_binary", r"column 'churned': binary_classes .*found 3"),
        ("gate_metric_of_another_task", r"gate_metric \(gate metric 'r2' is not computed"),
        ("zero_byte_parquet", r"StepError: input data .*zero.parquet is an empty file \(0 bytes\)"),
    ],
)
def test_bad_input_fails_clearly_and_registers_nothing(
    local_state: LocalState,
    case: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The steps' temporary files (KFP writes each step's source to `mktemp -d`) stay in
    # the run's own folder, even when it fails: none reaches the caller's TMPDIR.
    callers_tmp = tmp_path / "tmp"
    callers_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(callers_tmp))
    client = local_state.client()
    before = len(client.search_model_versions(f"name='{local_state.settings.registered_model}'"))
    labels = pd.read_parquet(local_state.settings.data_dir / "churn_labels.parquet").head(200)
    overrides: dict[str, object] = {}
    if case == "missing_column":
        overrides["entity_source"] = write_labels(
            local_state, labels.drop(columns="churned"), f"{case}.parquet"
        )
    elif case == "null_keys":
        labels["customer_id"] = labels["customer_id"].astype("Int64")
        labels.loc[labels.index[:5], "customer_id"] = pd.NA
        overrides["entity_source"] = write_labels(local_state, labels, f"{case}.parquet")
    elif case == "empty":
        overrides["entity_source"] = write_labels(local_state, labels.iloc[:0], f"{case}.parquet")
    elif case == "regression_as_binary":
        labels["churned"] = labels["churned"] * 10.0 + labels.index / 7.0
        overrides["entity_source"] = write_labels(local_state, labels, f"{case}.parquet")
        overrides["task"] = "binary"
    elif case == "three_classes_as_binary":
        labels["churned"] = labels.index % 3
        overrides["entity_source"] = write_labels(local_state, labels, f"{case}.parquet")
        overrides["task"] = "binary"
    elif case == "gate_metric_of_another_task":
        overrides["gate_metric"] = "r2"
    elif case == "zero_byte_parquet":
        path = local_state.settings.data_dir / "zero.parquet"
        path.write_bytes(b"")
        overrides["entity_source"] = str(path)
    else:
        overrides["feature_service"] = "churn_v9"

    with pytest.raises(PipelineFailedError, match=expected) as failed:
        run_training(local_state, **overrides)
    assert "\x1b[" not in str(failed.value)
    # Refused before tuning: the steps after validation never started.
    started = {s.name for s in failed.value.result.steps if s.state != "pending"}
    assert not started & {"tune", "train-model"}, started
    assert list(callers_tmp.iterdir()) == []
    assert list((local_state.settings.state / "tmp").iterdir()) == []
    after = len(client.search_model_versions(f"name='{local_state.settings.registered_model}'"))
    assert after == before
