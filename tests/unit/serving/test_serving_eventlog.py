"""CloudEvents in the KServe logger's form, and the logger's bounded, counted buffer."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
    logger.log(*events)
    assert logger.flush(10)
    logger.close()
    full = _dropped("buffer_full") - before_full
    failed = _dropped("send_failed") - before_failed
    assert full >= len(events) - 4
    assert full + failed == len(events)


def test_log_returns_while_the_monitor_holds_a_delivery() -> None:
    """log() only enqueues: it returns while the sender is stuck inside a request."""
    received, release = threading.Event(), threading.Event()

    class Hold(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            received.set()
            release.wait(30)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hold)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    logger = InferenceLogger(f"http://127.0.0.1:{server.server_port}/", linger_s=0)
    try:
        first = inference_events(source="t", service="s", version=None, request={}, response={})
        logger.log(*first)
        assert received.wait(10), "the sender never reached the monitor"
        returned = threading.Event()
        more = inference_events(source="t", service="s", version=None, request={}, response={})

        def log_more() -> None:
            logger.log(*more)
            returned.set()

        threading.Thread(target=log_more, daemon=True).start()
        # A deadline, not a timing claim: a log() that waited for the network would wait for
        # `release`, which is only set below.
        assert returned.wait(10), "log() waited for the monitor"
        assert not release.is_set()
    finally:
        release.set()
        logger.close()
        server.shutdown()
        server.server_close()


def test_batching_is_set_on_the_command_line_and_defaults_to_the_settings() -> None:
    from dex_serving.run import settings_from
    from dex_serving.settings import TransformerSettings

    settings = settings_from(
        ["transformer", "--model", "models:/churn@champion", "--feature-repo", "repo",
         "--log-batch", "64", "--log-linger-s", "0.5"]
    )  # fmt: skip
    assert isinstance(settings, TransformerSettings)
    assert (settings.log_batch, settings.log_linger_s) == (64, 0.5)
    logger = InferenceLogger(f"http://127.0.0.1:{free_ports(1)[0]}")
    try:
        defaults = TransformerSettings(model="models:/churn@champion", feature_repo="repo")
        assert (logger.batch_size, logger.linger_s) == (defaults.log_batch, defaults.log_linger_s)
    finally:
        logger.close(timeout_s=1)
