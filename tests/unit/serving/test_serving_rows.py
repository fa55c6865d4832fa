"""The monitor reads model-input rows out of V1 and V2 request bodies."""

from __future__ import annotations

from dex_serving.monitor.rows import feature_rows

COLUMNS = ["a", "b"]


def test_v1_named_and_positional_rows() -> None:
    body = {"instances": [{"a": 1, "b": 2.5}, [3, 4], {"a": "x", "b": 1}, [1]]}
    assert feature_rows(body, COLUMNS) == [{"a": 1.0, "b": 2.5}, {"a": 3.0, "b": 4.0}]


def test_v2_named_tensors_and_one_2d_tensor() -> None:
    named = {"inputs": [{"name": "a", "data": [1, 2]}, {"name": "b", "data": [3, 4]}]}
    assert feature_rows(named, COLUMNS) == [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 4.0}]
    two_d = {"inputs": [{"name": "x", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}
    assert feature_rows(two_d, COLUMNS) == [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}]


def test_unreadable_bodies_give_no_rows() -> None:
    assert feature_rows("text", COLUMNS) == []
    assert feature_rows({"other": 1}, COLUMNS) == []
    assert feature_rows({"inputs": []}, COLUMNS) == []
