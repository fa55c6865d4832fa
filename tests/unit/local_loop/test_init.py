"""`dexctl init` reads key, timestamp, task and feature types from the user's file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from dexctl.init import plan_project, write_project


def rows(n: int = 30) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [f"a{i}" for i in range(n)],
            "seen_at": pd.date_range("2026-01-01", periods=n, freq="D", tz="UTC"),
            "plan": ["basic", "pro", "team"] * (n // 3),
            "spend": [float(i) for i in range(n)],
            "seats": list(range(n)),
            "outcome": [i * 1.5 for i in range(n)],
        }
    )


def test_plan_infers_key_time_task_and_feast_types(tmp_path: Path) -> None:
    plan = plan_project(
        rows(),
        data_path=tmp_path / "rows.parquet",
        project="My Rows",
        entity_key=None,
        timestamp_column=None,
        label="outcome",
        task="auto",
    )
    assert (plan.project, plan.entity_key, plan.entity_key_type) == ("my_rows", "account_id", "str")
    assert (plan.timestamp_column, plan.task) == ("seen_at", "regression")
    assert plan.features == {"plan": "String", "spend": "Float64", "seats": "Int64"}
    written = write_project(plan, tmp_path)
    project = yaml.safe_load(written["project"].read_text())
    assert project["task"] == "regression"
    assert project["gates"]["min_value"] == 0.0
    definitions = (written["feature_repo"] / "definitions.py").read_text()
    assert "ValueType.STRING" in definitions
    assert 'Field(name="plan", dtype=String)' in definitions


def test_plan_names_what_it_cannot_use(tmp_path: Path) -> None:
    frame = rows()
    with pytest.raises(
        ValueError, match=r"label 'outcome': classification_label .*declare task: regression"
    ):
        plan_project(
            frame,
            data_path=tmp_path / "x.parquet",
            project="x",
            entity_key="account_id",
            timestamp_column="seen_at",
            label="outcome",
            task="binary",
        )
    with pytest.raises(ValueError, match=r"label 'missing' is not a column"):
        plan_project(
            frame,
            data_path=tmp_path / "x.parquet",
            project="x",
            entity_key=None,
            timestamp_column=None,
            label="missing",
            task="auto",
        )
