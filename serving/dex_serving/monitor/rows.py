"""Model-input rows out of logged request bodies (V1 or V2 JSON, as a predictor receives them)."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

Row = dict[str, float | str]


def _num(value: Any, text_ok: bool = False) -> float | str | None:
    """A feature value: a finite number, or text where a categorical feature's raw value is."""
    if isinstance(value, str):
        return value if text_ok else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _from_mapping(row: Mapping[str, Any], categorical: Collection[str] = ()) -> Row | None:
    out: Row = {}
    for key, value in row.items():
        number = _num(value, str(key) in categorical)
        if number is None:
            return None
        out[str(key)] = number
    return out


def _from_list(
    row: Sequence[Any], columns: Sequence[str], categorical: Collection[str] = ()
) -> Row | None:
    if len(row) != len(columns):
        return None
    values = [_num(v, c in categorical) for v, c in zip(row, columns, strict=True)]
    if any(v is None for v in values):
        return None
    return {c: v for c, v in zip(columns, values, strict=True) if v is not None}


def feature_rows(data: Any, columns: Sequence[str], categorical: Collection[str] = ()) -> list[Row]:
    """Rows of a V1 ``instances`` or V2 ``inputs`` body; unreadable rows are skipped, since a
    log line the monitor cannot read must not block storing the event. Text is a value only
    in ``categorical`` columns."""
    if not isinstance(data, Mapping):
        return []
    if isinstance(data.get("instances"), list):
        rows: list[Row] = []
        for item in data["instances"]:
            row = None
            if isinstance(item, Mapping):
                row = _from_mapping(item, categorical)
            elif isinstance(item, list) and columns:
                row = _from_list(item, columns, categorical)
            if row is not None:
                rows.append(row)
        return rows
    if isinstance(data.get("inputs"), list):
        return _v2_rows(data["inputs"], columns, categorical)
    return []


def _v2_rows(
    inputs: list[Any], columns: Sequence[str], categorical: Collection[str] = ()
) -> list[Row]:
    tensors = [t for t in inputs if isinstance(t, Mapping) and isinstance(t.get("data"), list)]
    if len(tensors) == 1 and columns:
        shape = tensors[0].get("shape")
        data = _flat(tensors[0]["data"])
        width = len(columns)
        if (
            isinstance(shape, list)
            and len(shape) == 2
            and shape[1] == width
            and len(data) % width == 0
        ):
            found = [
                _from_list(data[i : i + width], columns, categorical)
                for i in range(0, len(data), width)
            ]
            return [r for r in found if r is not None]
    named = {str(t.get("name")): _flat(t["data"]) for t in tensors}
    if not named:
        return []
    n = min(len(v) for v in named.values())
    out: list[Row] = []
    for i in range(n):
        row = _from_mapping({name: values[i] for name, values in named.items()}, categorical)
        if row is not None:
            out.append(row)
    return out


def _flat(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flat(item))
        else:
            flat.append(item)
    return flat
