"""A real Prometheus text endpoint on 127.0.0.1 exposing the drift share gauge under the names
the DEX drift monitor uses (``dex.metrics``), its values set by the caller: the drift a DexModel's
analysis and a DexPipeline's trigger read, without a model serving traffic to drift."""

from __future__ import annotations

import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Gauge, make_wsgi_app

from dex.metrics import DRIFT_SHARE, MODEL_LABELS
from dexctl.processes import free_ports


class DriftEndpoint:
    """A real Prometheus text endpoint exposing the drift share gauge under the names the DEX
    monitor uses (``dex.metrics``); tests set the values."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.gauge = Gauge(
            DRIFT_SHARE,
            "Share of drifted features.",
            list(MODEL_LABELS),
            registry=self.registry,
        )
        (self.port,) = free_ports(1)

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

        self.server: WSGIServer = make_server(
            "127.0.0.1", self.port, make_wsgi_app(self.registry), handler_class=Quiet
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, model: str, version: str, value: float) -> None:
        self.gauge.labels(model, version).set(value)

    def __enter__(self) -> DriftEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
