"""The event spool: bounded on disk, oldest first, kept across a restart of the sender."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import REGISTRY

from dex_serving.eventlog import InferenceLogger, inference_events
from dex_serving.spool import Spool
from dexctl.polling import eventually
from dexctl.processes import free_ports


def test_bounded_ordered_and_reopened(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=250)
    assert spool.put(b"a" * 100, 1)
    assert spool.put(b"b" * 100, 2)
    assert not spool.put(b"c" * 100, 3), "the third batch exceeds the bound"
    assert spool.size_bytes == 200
    (tmp_path / "half-written.tmp").write_bytes(b"x")  # a crash mid-write
    reopened = Spool(tmp_path, max_bytes=250)
    assert reopened.size_bytes == 200
    assert len(reopened) == 2
    assert not (tmp_path / "half-written.tmp").exists()
    first = reopened.oldest()
    assert first is not None
    assert (first.body, first.events) == (b"a" * 100, 1)
    reopened.remove(first)
    second = reopened.oldest()
    assert second is not None
    assert (second.body, second.events) == (b"b" * 100, 2)
    assert reopened.size_bytes == 100


def _count(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_undeliverable_batches_wait_and_a_new_logger_replays_them(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    spooled, replayed = (
        _count("dex_inference_events_spooled_total"),
        _count("dex_inference_events_replayed_total"),
    )
    failed = REGISTRY.get_sample_value(
        "dex_inference_events_dropped_total", {"reason": "send_failed"}
    )
    # Nothing listens yet: the batch goes to disk instead of being dropped.
    first = InferenceLogger(
        f"http://127.0.0.1:{port}/", spool=Spool(tmp_path, 2**20), max_attempts=1, linger_s=0
    )
    events = inference_events(source="t", service="s", version="1", request={}, response={})
    first.log(*events)
    assert first.flush(10)
    first.close()
    assert _count("dex_inference_events_spooled_total") - spooled == 2
    assert (
        REGISTRY.get_sample_value("dex_inference_events_dropped_total", {"reason": "send_failed"})
        == failed
    )
    assert len(Spool(tmp_path, 2**20)) == 1

    received: list[str] = []

    class Take(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.extend(event["id"] + event["type"] for event in json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Take)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    second = InferenceLogger(f"http://127.0.0.1:{port}/", spool=Spool(tmp_path, 2**20))
    try:
        # The file goes once delivered; the counter follows on the logger's thread.
        eventually(lambda: len(Spool(tmp_path, 2**20)) == 0, timeout=10, what="the replay")
        eventually(
            lambda: _count("dex_inference_events_replayed_total") - replayed == 2,
            timeout=10,
            what="2 events counted as replayed",
        )
        assert sorted(received) == sorted(e.id + e.type for e in events)
    finally:
        second.close()
        server.shutdown()
        server.server_close()
