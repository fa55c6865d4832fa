"""Open Inference Protocol (V2) helpers over KServe's ``InferRequest``/``InferResponse``."""

from __future__ import annotations

from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse
from kserve.errors import InvalidInput

from dex_serving.payloads import PayloadError

_DATATYPES = {"i": "INT64", "u": "INT64", "f": "FP64", "b": "BOOL"}


def tensors_of(request: InferRequest) -> dict[str, np.ndarray]:
    """Decode every input; a shape/data mismatch is the client's fault, so it is a 400."""
    tensors: dict[str, np.ndarray] = {}
    for inp in request.inputs:
        if inp.name in tensors:
            raise InvalidInput(f"input '{inp.name}' given twice")
        if any(not isinstance(d, int) or d < 0 for d in inp.shape):
            raise InvalidInput(f"input '{inp.name}': invalid shape {inp.shape}")
        try:
            tensors[inp.name] = inp.as_numpy()
        except InvalidInput:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput(
                f"input '{inp.name}': data does not match datatype {inp.datatype} "
                f"and shape {inp.shape}: {exc}"
            ) from exc
    return tensors


def output(name: str, array: np.ndarray) -> InferOutput:
    kind = array.dtype.kind
    if kind in _DATATYPES:
        datatype = _DATATYPES[kind]
        data: list[Any] = array.astype(np.float64 if kind == "f" else array.dtype).tolist()
    else:
        datatype = "BYTES"
        data = [str(v) for v in array.reshape(-1)]
    out = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
    out.data = _flatten(data) if datatype != "BYTES" else data
    return out


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def response(
    model_name: str, request_id: str | None, outputs: list[InferOutput], version: str | None
) -> InferResponse:
    return InferResponse(
        response_id=request_id or "",
        model_name=model_name,
        model_version=version,
        infer_outputs=outputs,
    )


def invalid(exc: PayloadError) -> InvalidInput:
    return InvalidInput(str(exc))
