"""CloudEvents in the KServe logger's form, and the logger's bounded, counted buffer."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from dex_serving.eventlog import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    CloudEvent,
    InferenceLogger,
    inference_events,
)
from dexctl.processes import free_ports


def test_request_and_response_share_an_id_and_round_trip_binary_mode() -> None:
    request, response = inference_events(
        source="test", service="churn", version="3", request={"instances": []}, response={}
    )
    assert request.id == response.id
    assert (request.type, response.type) == (REQUEST_TYPE, RESPONSE_TYPE)
    headers = request.binary_headers()
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "org.kubeflow.serving.inference.request"
    assert headers["ce-inferenceservicename"] == "churn"
    assert headers["ce-modelversion"] == "3"
    back = CloudEvent.from_binary({k.title(): v for k, v in headers.items()}, request.data)
    assert back.model_dump() == request.model_dump()


def _dropped(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("dex_inference_events_dropped_total", {"reason": reason}) or 0.0
    )


def test_full_buffer_and_failed_delivery_are_dropped_and_counted() -> None:
    before_full, before_failed = _dropped("buffer_full"), _dropped("send_failed")
    # Nothing listens on this port: every delivery fails fast.
    logger = InferenceLogger(
        f"http://127.0.0.1:{free_ports(1)[0]}", capacity=2, batch_size=10, max_attempts=1
    )
    events = [
        e
        for _ in range(5)
        for e in inference_events(source="t", service="s", version=None, request={}, response={})
    ]
    started = time.perf_counter()
    logger.log(*events)
    assert time.perf_counter() - started < 0.05, "log() must never wait for the network"
    assert logger.flush(10)
    logger.close()
    full = _dropped("buffer_full") - before_full
    failed = _dropped("send_failed") - before_failed
    assert full >= len(events) - 4
    assert full + failed == len(events)
