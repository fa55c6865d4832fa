"""Tuning trials fit on at most MAX_TUNING_ROWS rows (the newest), whatever the set's size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dex_components import tuning


def test_trials_fit_on_the_newest_rows_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.MlflowClient().create_experiment("t", str(tmp_path / "artifacts"))
    monkeypatch.setattr(tuning, "MAX_TUNING_ROWS", 100)
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "event_timestamp": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC"),
            "x": rng.normal(size=n),
        }
    )
    frame["y"] = (frame["x"] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    result = tuning.tune(
        frame,
        feature_columns=["x"],
        label="y",
        timestamp_column="event_timestamp",
        n_trials=1,
        timeout_s=60,
        experiment_id=experiment,
        seed=0,
    )
    params = mlflow.MlflowClient().get_run(result.parent_run_id).data.params
    # 80 % of 400 rows is the fit slice (320): the limit, not the slice, decides.
    assert params["tuning_rows"] == "100"
