import pandas as pd
import pytest

from dex_components.errors import DataValidationError
from dex_components.validate import ColumnRange, ValidationSpec, validate_frame

SPEC = ValidationSpec(
    entity_key="customer_id",
    timestamp_column="event_timestamp",
    label="churned",
    label_values=[0, 1],
)


def frame(**overrides: list[object]) -> pd.DataFrame:
    data: dict[str, list[object]] = {
        "customer_id": [1, 2, 3],
        "event_timestamp": list(
            pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True)
        ),
        "churned": [0, 1, 0],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_clean_frame_passes() -> None:
    report = validate_frame(frame(), SPEC)
    assert report.passed, report.failures
    report.raise_for_failures()
    assert "| not_empty |" in report.to_markdown()


def test_missing_column_is_named() -> None:
    with pytest.raises(DataValidationError, match=r"column 'churned': column_present"):
        validate_frame(frame().drop(columns="churned"), SPEC).raise_for_failures()


def test_null_entity_keys_are_named() -> None:
    with pytest.raises(
        DataValidationError, match=r"column 'customer_id': not_null \(1 null values\)"
    ):
        validate_frame(frame(customer_id=[1, None, 3]), SPEC).raise_for_failures()


def test_empty_dataset() -> None:
    with pytest.raises(DataValidationError, match=r"not_empty \(0 rows"):
        validate_frame(frame().iloc[:0], SPEC).raise_for_failures()


def test_duplicate_keys_and_bad_labels_reported_together() -> None:
    bad = frame(customer_id=[1, 1, 1], event_timestamp=[pd.Timestamp("2026-01-01", tz="UTC")] * 3)
    bad["churned"] = [0, 1, 7]
    report = validate_frame(bad, SPEC)
    rules = {(c.rule, c.column) for c in report.failures}
    assert ("unique_key", "customer_id") in rules
    assert ("allowed_values", "churned") in rules


def test_single_class_label_fails() -> None:
    report = validate_frame(frame(churned=[0, 0, 0]), SPEC)
    assert [c.rule for c in report.failures] == ["label_classes"]


def test_ranges() -> None:
    spec = SPEC.model_copy(update={"ranges": {"customer_id": ColumnRange(min=2, max=2)}})
    failures = validate_frame(frame(), spec).failures
    assert [(c.rule, c.column, c.detail) for c in failures] == [
        ("range", "customer_id", "1 below 2.0, 1 above 2.0")
    ]
