"""Run ``kserve.ModelServer`` the way DEX needs it: bound to a chosen host, no gRPC by
default, no per-request log lines.

``kserve`` parses ``sys.argv`` when it is first imported (``parse_known_args``, which also
accepts abbreviations: ``--model`` would silently match its ``--model_name``). Our entry
points parse their own arguments first and call :func:`isolate_argv` before importing it.
"""

from __future__ import annotations

import sys
from typing import Any


def isolate_argv() -> None:
    sys.argv = sys.argv[:1]


def run(
    models: list[Any],
    *,
    host: str,
    http_port: int,
    timeout_keep_alive: int,
    grpc_port: int | None = None,
    predictor_host: str | None = None,
    predictor_protocol: str = "v1",
) -> None:
    from kserve import ModelServer, PredictorConfig

    from dex_serving import logs

    class _BoundModelServer(ModelServer):  # type: ignore[misc]
        # RESTServer hard-codes host 0.0.0.0 in its uvicorn Config; the config is read
        # only when serving starts, which is after setup_event_loop().
        def setup_event_loop(self) -> None:
            super().setup_event_loop()
            if self._rest_server is not None:
                self._rest_server.config.host = host

    config = None
    if predictor_host:
        config = PredictorConfig(
            predictor_host=predictor_host,
            predictor_protocol=predictor_protocol,
            predictor_request_timeout_seconds=30,
            # KServe's --enable_predictor_health_check: the transformer is ready only while
            # its predictor answers through the predictor's Service, so "Ready" means the
            # whole path serves (a new Service's routing can lag its pods' readiness).
            predictor_health_check=True,
        )
    server = _BoundModelServer(
        http_port=http_port,
        grpc_port=grpc_port or 0,
        enable_grpc=grpc_port is not None,
        enable_latency_logging=False,
        workers=1,
        timeout_keep_alive=timeout_keep_alive,
        predictor_config=config,
    )
    logs.tame_server_logs()
    logs.silence_library_warnings()
    server.start(models)
