"""Task inference and its rules, text/categorical features, and the dex.yaml project file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dex.settings import DexSettings, ProjectFileError
from dex.tasks import categorical_columns, check_gate_metric, resolve_task


def label(values: list[object]) -> pd.Series[object]:
    return pd.Series(values, name="y")


@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([0, 1] * 10, "binary"),
        (["no", "yes"] * 10, "binary"),
        (["setosa", "versicolor", "virginica"] * 10, "multiclass"),
        (list(np.linspace(0.0, 1.0, 30)), "regression"),
        (list(range(100)), "regression"),  # more integers than classes: a quantity
    ],
)
def test_task_is_inferred_from_the_label(values: list[object], task: str) -> None:
    assert resolve_task(label(values), "auto", min_class_rows=1) == (task, [])


@pytest.mark.parametrize(
    ("values", "declared", "rule", "hint"),
    [
        (list(np.linspace(0.0, 1.0, 30)), "binary", "classification_label", "regression"),
        ([0, 1, 2] * 10, "binary", "binary_classes", "multiclass"),
        (["a", "b"] * 10, "regression", "regression_label", "binary or multiclass"),
        ([0, 1] * 10, "multiclass", "multiclass_classes", "binary"),
        ([1] * 10, "auto", "label_classes", "only one class"),
    ],
)
def test_a_label_that_does_not_fit_the_task_is_named(
    values: list[object], declared: str, rule: str, hint: str
) -> None:
    task, problems = resolve_task(label(values), declared, min_class_rows=1)
    assert task is None
    assert [(p.rule, p.column) for p in problems] == [(rule, "y")]
    assert hint in problems[0].detail


def test_rare_classes_are_refused() -> None:
    _, problems = resolve_task(label(["a"] * 10 + ["b"] * 10 + ["c"]), "auto", min_class_rows=5)
    assert [p.rule for p in problems] == ["class_rows"]
    assert "'c': 1" in problems[0].detail


def test_gate_metric_must_belong_to_the_task() -> None:
    assert check_gate_metric("regression", "r2") is None
    problem = check_gate_metric("binary", "r2")
    assert problem is not None
    assert "roc_auc" in problem.detail


def test_text_features_become_categorical_and_bad_ones_are_named() -> None:
    frame = pd.DataFrame(
        {
            "size": ["s", "m", "l"] * 100,
            "x": np.arange(300.0),
            "code": [0, 1, 2] * 100,
            "free_text": [f"t{i}" for i in range(300)],
            "when": pd.date_range("2026-01-01", periods=300, freq="h"),
        }
    )
    chosen, problems = categorical_columns(frame, ["size", "x", "code"], ["code"])
    assert (chosen, problems) == (["size", "code"], [])
    _, problems = categorical_columns(frame, ["free_text", "when"], ["nope"])
    assert [(p.rule, p.column) for p in problems] == [
        ("categorical_features", "nope"),
        ("categories", "free_text"),
        ("feature_type", "when"),
    ]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("DEX_PROJECT_FILE", "DEX_LABEL", "DEX_DATA_DIR", "DEX_TASK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_without_a_project_file_the_defaults_are_the_churn_demo(project: Path) -> None:
    settings = DexSettings()
    assert (settings.label, settings.entity_key, settings.feature_service) == (
        "churned",
        "customer_id",
        "churn_v1",
    )
    assert settings.project_path is None


def test_project_file_is_found_paths_are_relative_to_it_and_env_wins(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "dex.yaml").write_text(
        "label: target\ntask: regression\nfeature_repo: repo\n"
        "entity_source: data/rows.parquet\ngates:\n  min_value: 0.1\n"
    )
    settings = DexSettings()
    assert (settings.label, settings.task, settings.gates.min_value) == (
        "target",
        "regression",
        0.1,
    )
    assert settings.feature_repo == project / "repo"
    assert settings.entity_source == str(project / "data" / "rows.parquet")
    monkeypatch.setenv("DEX_LABEL", "other")
    monkeypatch.setenv("DEX_DATA_DIR", str(project / "mine"))
    overridden = DexSettings()
    assert overridden.label == "other"
    # A user's DEX_DATA_DIR is where Feast's sources read, not replaced by the state's.
    assert overridden.data_dir == project / "mine"
    assert overridden.data_location == str(project / "mine")


def test_data_in_object_storage_is_kept_as_a_uri_for_feast(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dex.features import feast_env

    monkeypatch.setenv("DEX_DATA_DIR", "s3://bucket/churn/")
    settings = DexSettings()
    # What Feast's sources and the default entity source read: the URI, not a local path.
    assert settings.data_location == "s3://bucket/churn"
    assert feast_env(settings)["DEX_DATA_DIR"] == "s3://bucket/churn"
    assert settings.entity_source_uri == "s3://bucket/churn/churn_labels.parquet"
    # What writes local files refuses it, naming the variable.
    with pytest.raises(ValueError, match="DEX_DATA_DIR=s3://bucket/churn/ is a URI"):
        _ = settings.data_dir


def test_unknown_project_keys_are_named(project: Path) -> None:
    (project / "dex.yaml").write_text("lable: target\n")
    with pytest.raises(ProjectFileError, match=r"unknown keys \['lable'\]"):
        DexSettings()
