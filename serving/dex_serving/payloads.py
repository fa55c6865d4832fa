"""Request parsing for the predictor and the transformer, free of any server library.

Every problem raises :class:`PayloadError` with a message naming the field at fault; the
servers turn it into KServe's ``InvalidInput`` (HTTP 400) so bad input never becomes a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

Matrix = npt.NDArray[np.float64]

# Keep far below int64 limits; Feast and SQLite both store int64 entity keys.
_MAX_KEY = 2**62
# Text entity keys: ids, not documents.
_MAX_KEY_CHARS = 256

EntityKey = int | str


class PayloadError(ValueError):
    """The request is malformed; the message is safe to return to the client."""


def _number(value: object, where: str) -> float:
    # bool is an int subclass: "true" is never a feature value.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{where}: expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise PayloadError(f"{where}: expected a finite number, got {value}")
    return number


def _category(value: object, where: str) -> str | float:
    """A categorical feature's raw value: text, or a number for integer-coded categories."""
    if isinstance(value, str):
        return value
    return _number(value, where)


def _entity_key(value: object, where: str, key_type: str = "int") -> EntityKey:
    if key_type == "str":
        if not isinstance(value, str):
            raise PayloadError(f"{where}: expected a string entity key, got {type(value).__name__}")
        if not 0 < len(value) <= _MAX_KEY_CHARS:
            raise PayloadError(f"{where}: entity key must have 1 to {_MAX_KEY_CHARS} characters")
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise PayloadError(f"{where}: expected an integer, got {type(value).__name__}")
    if not -_MAX_KEY < value < _MAX_KEY:
        raise PayloadError(f"{where}: integer {value} out of range")
    return value


def _check_batch(n: int, max_batch: int, what: str) -> None:
    if n == 0:
        raise PayloadError(f"{what}: empty batch")
    if n > max_batch:
        raise PayloadError(f"{what}: batch of {n} exceeds the maximum of {max_batch}")


def _instances(payload: object, max_batch: int) -> list[object]:
    if isinstance(payload, bytes | bytearray | str):
        # kserve hands over the raw body when the content type is not JSON (e.g. curl -d).
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, Mapping):
        raise PayloadError(f"request body must be a JSON object, got {type(payload).__name__}")
    if "instances" not in payload:
        raise PayloadError("request body has no 'instances' field")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise PayloadError(f"'instances' must be a list, got {type(instances).__name__}")
    _check_batch(len(instances), max_batch, "'instances'")
    return instances


# ---------------------------------------------------------------- predictor: model inputs


def v1_matrix(
    payload: object, columns: Sequence[str], max_batch: int, categorical: Collection[str] = ()
) -> Matrix | pd.DataFrame:
    """V1 ``{"instances": [...]}`` with rows as lists (in ``columns`` order) or name->value
    objects. A float matrix; with ``categorical`` columns a frame, their raw values kept."""
    if categorical:
        return _v1_frame(payload, columns, max_batch, categorical)
    instances = _instances(payload, max_batch)
    width = len(columns)
    out = np.empty((len(instances), width), dtype=np.float64)
    for i, row in enumerate(instances):
        if isinstance(row, Mapping):
            missing = [c for c in columns if c not in row]
            if missing:
                raise PayloadError(f"instances[{i}]: missing features {missing}")
            extra = sorted(str(k) for k in row if k not in columns)
            if extra:
                raise PayloadError(f"instances[{i}]: unknown features {extra}")
            for j, col in enumerate(columns):
                out[i, j] = _number(row[col], f"instances[{i}].{col}")
        elif isinstance(row, list):
            if len(row) != width:
                raise PayloadError(f"instances[{i}]: expected {width} values, got {len(row)}")
            for j, value in enumerate(row):
                out[i, j] = _number(value, f"instances[{i}][{j}]")
        else:
            raise PayloadError(
                f"instances[{i}]: expected a list or an object, got {type(row).__name__}"
            )
    return out


def _v1_frame(
    payload: object, columns: Sequence[str], max_batch: int, categorical: Collection[str]
) -> pd.DataFrame:

    instances = _instances(payload, max_batch)
    width = len(columns)
    data: dict[str, list[object]] = {c: [] for c in columns}
    for i, row in enumerate(instances):
        if isinstance(row, Mapping):
            missing = [c for c in columns if c not in row]
            if missing:
                raise PayloadError(f"instances[{i}]: missing features {missing}")
            extra = sorted(str(k) for k in row if k not in columns)
            if extra:
                raise PayloadError(f"instances[{i}]: unknown features {extra}")
            values = [row[c] for c in columns]
            names = [f"instances[{i}].{c}" for c in columns]
        elif isinstance(row, list):
            if len(row) != width:
                raise PayloadError(f"instances[{i}]: expected {width} values, got {len(row)}")
            values, names = row, [f"instances[{i}][{j}]" for j in range(width)]
        else:
            raise PayloadError(
                f"instances[{i}]: expected a list or an object, got {type(row).__name__}"
            )
        for col, value, where in zip(columns, values, names, strict=True):
            parse = _category if col in categorical else _number
            data[col].append(parse(value, where))
    return _frame(data, columns, categorical)


def _frame(
    data: Mapping[str, Sequence[object]], columns: Sequence[str], categorical: Collection[str]
) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {c: pd.Series(data[c], dtype=object if c in categorical else np.float64) for c in columns},
        columns=list(columns),
    )


def v2_matrix(
    tensors: Mapping[str, np.ndarray],
    columns: Sequence[str],
    max_batch: int,
    categorical: Collection[str] = (),
) -> Matrix | pd.DataFrame:
    """V2 inputs: either one 2-D tensor ``[n, k]`` in ``columns`` order, or one 1-D tensor per
    column named after it (the MLflow/MLServer convention). With ``categorical`` columns, one
    tensor per column, those as BYTES (text) or numbers, and a frame comes back."""
    if not tensors:
        raise PayloadError("'inputs' is empty")
    if categorical:
        return _v2_frame(tensors, columns, max_batch, categorical)
    width = len(columns)
    for name, array in tensors.items():
        if array.dtype.kind not in "biuf":
            raise PayloadError(f"input '{name}': expected a numeric datatype, got {array.dtype}")
        if array.dtype.kind == "b":
            raise PayloadError(f"input '{name}': BOOL is not a feature datatype")
    if len(tensors) == 1:
        name, array = next(iter(tensors.items()))
        if array.ndim == 2:
            if array.shape[1] != width:
                raise PayloadError(
                    f"input '{name}': expected shape [n, {width}], got {list(array.shape)}"
                )
            _check_batch(array.shape[0], max_batch, f"input '{name}'")
            return _finite(array.astype(np.float64), name)
    missing = [c for c in columns if c not in tensors]
    if missing:
        raise PayloadError(f"missing inputs {missing} (or send one [n, {width}] tensor)")
    extra = sorted(n for n in tensors if n not in columns)
    if extra:
        raise PayloadError(f"unknown inputs {extra}")
    first = tensors[columns[0]]
    n = first.shape[0] if first.ndim >= 1 else -1
    for col in columns:
        array = tensors[col]
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1 or array.shape[0] != n:
            raise PayloadError(f"input '{col}': expected shape [{n}], got {list(array.shape)}")
    _check_batch(n, max_batch, "inputs")
    matrix = np.column_stack([tensors[c].reshape(n).astype(np.float64) for c in columns])
    return _finite(matrix, "inputs")


def _v2_frame(
    tensors: Mapping[str, np.ndarray],
    columns: Sequence[str],
    max_batch: int,
    categorical: Collection[str],
) -> pd.DataFrame:
    missing = [c for c in columns if c not in tensors]
    if missing:
        raise PayloadError(f"missing inputs {missing} (one tensor per feature)")
    extra = sorted(n for n in tensors if n not in columns)
    if extra:
        raise PayloadError(f"unknown inputs {extra}")
    n = -1
    data: dict[str, list[object]] = {}
    for col in columns:
        array = tensors[col]
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1 or (n >= 0 and array.shape[0] != n):
            raise PayloadError(f"input '{col}': expected shape [n], got {list(array.shape)}")
        n = array.shape[0]
        if col in categorical:
            data[col] = [_category(_text(v), f"{col}[{i}]") for i, v in enumerate(array.tolist())]
        else:
            if array.dtype.kind not in "iuf":
                raise PayloadError(f"input '{col}': expected a numeric datatype, got {array.dtype}")
            data[col] = [_number(float(v), f"{col}[{i}]") for i, v in enumerate(array.tolist())]
    _check_batch(n, max_batch, "inputs")
    return _frame(data, columns, categorical)


def _text(value: object) -> object:
    # V2 BYTES tensors decode to bytes; a categorical value is text.
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _finite(matrix: Matrix, where: str) -> Matrix:
    if not np.isfinite(matrix).all():
        raise PayloadError(f"{where}: values must be finite numbers")
    return matrix


# ---------------------------------------------------------------- transformer: entity rows


@dataclass
class EntityBatch:
    """Entity keys plus request-time values (for on-demand features), one entry per row."""

    keys: list[EntityKey]
    request_values: dict[str, list[float]] = field(default_factory=dict)

    def entity_rows(self, entity_key: str) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for i, key in enumerate(self.keys):
            row: dict[str, object] = {entity_key: key}
            for name, values in self.request_values.items():
                row[name] = values[i]
            rows.append(row)
        return rows


def v1_entities(
    payload: object,
    entity_key: str,
    request_fields: Sequence[str],
    max_batch: int,
    key_type: str = "int",
) -> EntityBatch:
    """``{"instances": [{"customer_id": 7, <request fields>...}, ...]}``; a bare key row
    is accepted as the entity key when the model needs no request-time fields."""
    instances = _instances(payload, max_batch)
    batch = EntityBatch(keys=[], request_values={f: [] for f in request_fields})
    allowed = {entity_key, *request_fields}
    for i, row in enumerate(instances):
        if not isinstance(row, Mapping):
            bare_key_types: tuple[type, ...] = (str,) if key_type == "str" else (int, float)
            if request_fields or not isinstance(row, bare_key_types):
                raise PayloadError(
                    f"instances[{i}]: expected an object with '{entity_key}'"
                    + (f" and {list(request_fields)}" if request_fields else "")
                )
            batch.keys.append(_entity_key(row, f"instances[{i}]", key_type))
            continue
        if entity_key not in row:
            raise PayloadError(f"instances[{i}]: missing entity key '{entity_key}'")
        extra = sorted(str(k) for k in row if k not in allowed)
        if extra:
            raise PayloadError(f"instances[{i}]: unknown fields {extra}")
        batch.keys.append(_entity_key(row[entity_key], f"instances[{i}].{entity_key}", key_type))
        for name in request_fields:
            if name not in row:
                raise PayloadError(f"instances[{i}]: missing request field '{name}'")
            batch.request_values[name].append(_number(row[name], f"instances[{i}].{name}"))
    return batch


def v2_entities(
    tensors: Mapping[str, np.ndarray],
    entity_key: str,
    request_fields: Sequence[str],
    max_batch: int,
    key_type: str = "int",
) -> EntityBatch:
    """One 1-D tensor named after the entity key (INT64, or BYTES for text keys), plus one
    per request-time field."""
    if entity_key not in tensors:
        raise PayloadError(f"missing input '{entity_key}' (the entity key)")
    extra = sorted(n for n in tensors if n != entity_key and n not in request_fields)
    if extra:
        raise PayloadError(f"unknown inputs {extra}")
    keys = tensors[entity_key]
    if keys.ndim != 1:
        raise PayloadError(f"input '{entity_key}': expected shape [n], got {list(keys.shape)}")
    wanted = "OSU" if key_type == "str" else "iu"
    if keys.dtype.kind not in wanted:
        kind = "a BYTES (text)" if key_type == "str" else "an integer"
        raise PayloadError(f"input '{entity_key}': expected {kind} datatype, got {keys.dtype}")
    n = keys.shape[0]
    _check_batch(n, max_batch, f"input '{entity_key}'")
    batch = EntityBatch(
        keys=[
            _entity_key(_text(k) if key_type == "str" else int(k), f"{entity_key}[{i}]", key_type)
            for i, k in enumerate(keys.tolist())
        ]
    )
    for name in request_fields:
        if name not in tensors:
            raise PayloadError(f"missing input '{name}' (a request-time field)")
        values = tensors[name]
        if values.dtype.kind not in "iuf" or values.ndim != 1 or values.shape[0] != n:
            raise PayloadError(
                f"input '{name}': expected a numeric tensor of shape [{n}], "
                f"got {values.dtype} {list(values.shape)}"
            )
        batch.request_values[name] = [
            _number(float(v), f"{name}[{i}]") for i, v in enumerate(values)
        ]
    return batch
