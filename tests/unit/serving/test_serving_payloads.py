"""Request parsing: every malformed payload is a PayloadError naming the problem."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dex_serving.payloads import PayloadError, v1_entities, v1_matrix, v2_entities, v2_matrix

COLUMNS = ["a", "b", "c"]


def test_v1_matrix_accepts_lists_and_named_rows_in_column_order() -> None:
    got = v1_matrix({"instances": [[1, 2, 3.5], {"c": 6, "a": 4, "b": 5}]}, COLUMNS, 10)
    assert got.tolist() == [[1.0, 2.0, 3.5], [4.0, 5.0, 6.0]]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"raw", "not valid JSON"),
        (b"[1]", "must be a JSON object, got list"),
        ([1, 2], "must be a JSON object, got list"),
        ({}, "no 'instances'"),
        ({"instances": {}}, "'instances' must be a list"),
        ({"instances": []}, "empty batch"),
        ({"instances": [[1, 2]]}, "expected 3 values, got 2"),
        ({"instances": [[1, 2, "x"]]}, "instances[0][2]: expected a number, got str"),
        ({"instances": [[1, 2, True]]}, "expected a number, got bool"),
        ({"instances": [{"a": 1, "b": 2}]}, "missing features ['c']"),
        ({"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]}, "unknown features ['d']"),
        ({"instances": [1.0]}, "expected a list or an object"),
        ({"instances": [[1, 2, float("inf")]]}, "finite"),
        ({"instances": [[1, 2, 3]] * 11}, "batch of 11 exceeds the maximum of 10"),
    ],
)
def test_v1_matrix_rejects(payload: object, message: str) -> None:
    with pytest.raises(PayloadError) as err:
        v1_matrix(payload, COLUMNS, 10)
    assert message in str(err.value)


def test_v2_matrix_one_2d_tensor_or_named_columns() -> None:
    two_d = v2_matrix({"x": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)}, COLUMNS, 10)
    named = v2_matrix(
        {c: np.array([i + 1.0, i + 4.0]) for i, c in enumerate(reversed(COLUMNS))}, COLUMNS, 10
    )
    assert two_d.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert named.tolist() == [[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]]


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({}, "'inputs' is empty"),
        ({"x": np.array([["a", "b", "c"]])}, "expected a numeric datatype"),
        ({"x": np.ones((2, 4))}, "expected shape [n, 3]"),
        ({"a": np.ones(2), "b": np.ones(2)}, "missing inputs ['c']"),
        ({"a": np.ones(2), "b": np.ones(2), "c": np.ones(3)}, "input 'c': expected shape [2]"),
        (
            {"a": np.ones(1), "b": np.ones(1), "c": np.ones(1), "z": np.ones(1)},
            "unknown inputs ['z']",
        ),
        ({"x": np.array([[1.0, np.nan, 3.0]])}, "finite"),
    ],
)
def test_v2_matrix_rejects(tensors: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(PayloadError) as err:
        v2_matrix(tensors, COLUMNS, 10)
    assert message in str(err.value)


def test_entities_v1_and_v2_with_request_fields() -> None:
    v1 = v1_entities({"instances": [{"id": 7, "amount": 2.5}]}, "id", ["amount"], 10)
    assert v1.keys == [7]
    assert v1.entity_rows("id") == [{"id": 7, "amount": 2.5}]
    v2 = v2_entities({"id": np.array([7, 8]), "amount": np.array([1.0, 2.0])}, "id", ["amount"], 10)
    assert v2.entity_rows("id") == [{"id": 7, "amount": 1.0}, {"id": 8, "amount": 2.0}]
    bare = v1_entities({"instances": [7, 8.0]}, "id", [], 10)
    assert bare.keys == [7, 8]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"instances": [{"x": 1}]}, "missing entity key 'id'"),
        ({"instances": [{"id": "7"}]}, "expected an integer, got str"),
        ({"instances": [{"id": 7.5}]}, "expected an integer, got float"),
        ({"instances": [{"id": True}]}, "expected an integer, got bool"),
        ({"instances": [{"id": 2**70}]}, "out of range"),
        ({"instances": [{"id": 1, "y": 2}]}, "unknown fields ['y']"),
        ({"instances": [[1]]}, "expected an object with 'id'"),
        ({"instances": [None]}, "expected an object with 'id'"),
    ],
)
def test_v1_entities_rejects(payload: object, message: str) -> None:
    with pytest.raises(PayloadError) as err:
        v1_entities(payload, "id", [], 10)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"x": np.array([1])}, "missing input 'id'"),
        ({"id": np.array([1.5])}, "expected an integer datatype"),
        ({"id": np.array([[1, 2]])}, "expected shape [n]"),
        (
            {"id": np.array([1]), "amount": np.array([1.0, 2.0])},
            "expected a numeric tensor of shape [1]",
        ),
        ({"id": np.array([1])}, "missing input 'amount'"),
    ],
)
def test_v2_entities_rejects(tensors: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(PayloadError) as err:
        v2_entities(tensors, "id", ["amount"], 10)
    assert message in str(err.value)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda c: st.one_of(
        st.lists(c, max_size=4),
        st.dictionaries(st.sampled_from(["instances", "id", "a", "b", "c"]), c, max_size=4),
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(payload=json_values)
def test_any_json_is_parsed_or_rejected_with_payload_error(payload: Any) -> None:
    for parse in (lambda p: v1_matrix(p, COLUMNS, 5), lambda p: v1_entities(p, "id", [], 5)):
        with contextlib.suppress(PayloadError):
            parse(payload)
