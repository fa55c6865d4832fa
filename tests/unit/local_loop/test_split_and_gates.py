import math

import pandas as pd
import pytest

from dex.contract import FeatureContract
from dex_components.errors import StepError
from dex_components.promotion import Gates, decide
from dex_components.split import time_split


def test_time_split_holds_out_the_newest_rows() -> None:
    ts = pd.date_range("2026-01-01", periods=100, freq="h", tz="UTC")
    frame = pd.DataFrame({"event_timestamp": ts[::-1], "x": range(100)})
    train, test, summary = time_split(frame, timestamp_column="event_timestamp", test_fraction=0.25)
    assert (summary.train_rows, summary.test_rows) == (75, 25)
    assert train["event_timestamp"].max() < test["event_timestamp"].min()


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_time_split_rejects_bad_fraction(fraction: float) -> None:
    frame = pd.DataFrame({"event_timestamp": pd.date_range("2026-01-01", periods=20, tz="UTC")})
    with pytest.raises(StepError, match="test_fraction"):
        time_split(frame, timestamp_column="event_timestamp", test_fraction=fraction)


GATES = Gates(metric="roc_auc", min_value=0.7, margin=0.01, max_drift_share=0.5)


def test_first_model_passing_gates_is_champion() -> None:
    decision, reasons = decide({"roc_auc": 0.8}, None, GATES, drift_share=0.1)
    assert decision == "champion"
    assert "no current champion" in reasons


def test_failing_quality_gate_is_challenger_even_without_champion() -> None:
    decision, reasons = decide({"roc_auc": 0.6}, None, GATES, drift_share=0.1)
    assert decision == "challenger"
    assert any("FAILED" in r for r in reasons)


def test_drift_gate() -> None:
    assert decide({"roc_auc": 0.9}, None, GATES, drift_share=0.9)[0] == "challenger"


@pytest.mark.parametrize(
    ("candidate", "champion", "expected"),
    [(0.805, 0.80, "challenger"), (0.8101, 0.80, "champion"), (0.79, 0.80, "challenger")],
)
def test_margin(candidate: float, champion: float, expected: str) -> None:
    assert decide({"roc_auc": candidate}, {"roc_auc": champion}, GATES, None)[0] == expected


def test_nan_metric_never_wins() -> None:
    assert decide({"roc_auc": math.nan}, None, GATES, None)[0] == "challenger"


def test_contract_round_trips_through_tags() -> None:
    contract = FeatureContract(
        feature_service="churn_v1",
        feature_refs=["a:x", "b:y"],
        feature_columns=["x", "y"],
        entity_key="customer_id",
        label="churned",
        reference_data="reference/reference.parquet",
    )
    assert FeatureContract.from_tags(contract.to_tags()) == contract
    with pytest.raises(ValueError, match="no feature contract"):
        FeatureContract.from_tags({"dex.label": "churned"})
