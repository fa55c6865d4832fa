"""Process entry point: ``python -m dex_serving.run {predictor,transformer,monitor} ...``.

Arguments are parsed here, before ``kserve`` is imported (it parses ``sys.argv`` itself at
import time); this module therefore imports nothing heavy at the top.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# One OpenMP thread per server process: a one-row tree-model predict is ~4x faster without
# thread hand-off, and scaling out is KServe's job (replicas), not OpenMP's. Set before
# scikit-learn loads its OpenMP runtime.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from dex_serving import logs
from dex_serving.settings import (
    DEFAULT_TRIGGER,
    MonitorSettings,
    PredictorSettings,
    TransformerSettings,
)

log = logging.getLogger("dex.serving")


def _common(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--model", required=True, help="models:/name@alias or models:/name/<n>")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--registry-uri")
    parser.add_argument("--host", default="127.0.0.1")
    # KServe appends --model_name/--predictor_host/--http_port to a custom container's args
    # (unless an arg starts with that exact flag): accept its spellings as aliases.
    parser.add_argument("--port", "--http_port", dest="port", type=int, default=port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dex_serving.run", allow_abbrev=False)
    sub = parser.add_subparsers(dest="role", required=True)

    p = sub.add_parser("predictor", allow_abbrev=False)
    _common(p, 8080)
    p.add_argument("--served-name", "--model_name", dest="served_name")
    p.add_argument("--max-batch", type=int, default=1000)

    t = sub.add_parser("transformer", allow_abbrev=False)
    _common(t, 8081)
    t.add_argument("--served-name", "--model_name", dest="served_name")
    t.add_argument("--feature-repo", type=Path, required=True)
    t.add_argument("--predictor-host", "--predictor_host", dest="predictor_host", required=True)
    t.add_argument("--predictor-protocol", choices=["v1", "v2"], default="v1")
    t.add_argument("--monitor-url")
    t.add_argument("--max-batch", type=int, default=1000)

    m = sub.add_parser("monitor", allow_abbrev=False)
    _common(m, 8082)
    m.add_argument("--state-dir", type=Path, required=True)
    m.add_argument("--window", type=int, default=10_000)
    m.add_argument("--min-rows", type=int, default=200)
    m.add_argument("--method", default="wasserstein")
    m.add_argument("--threshold", type=float, default=0.1)
    m.add_argument("--drift-share", type=float, default=0.5)
    m.add_argument("--interval", type=float, default=10.0)
    m.add_argument("--trigger-command", default=DEFAULT_TRIGGER, help="'' disables the trigger")
    m.add_argument("--trigger-cooldown", type=float, default=600.0)
    return parser


def settings_from(
    argv: Sequence[str] | None,
) -> PredictorSettings | TransformerSettings | MonitorSettings:
    ns = build_parser().parse_args(argv)
    common = {
        "model": ns.model,
        "tracking_uri": ns.tracking_uri,
        "registry_uri": ns.registry_uri,
        "host": ns.host,
        "http_port": ns.port,
    }
    if ns.role == "predictor":
        return PredictorSettings(**common, served_name=ns.served_name, max_batch=ns.max_batch)
    if ns.role == "transformer":
        return TransformerSettings(
            **common,
            served_name=ns.served_name,
            feature_repo=ns.feature_repo,
            predictor_host=ns.predictor_host,
            predictor_protocol=ns.predictor_protocol,
            monitor_url=ns.monitor_url,
            max_batch=ns.max_batch,
        )
    return MonitorSettings(
        **common,
        state_dir=ns.state_dir,
        window=ns.window,
        min_rows=ns.min_rows,
        method=ns.method,
        threshold=ns.threshold,
        drift_share=ns.drift_share,
        interval_s=ns.interval,
        trigger_command=ns.trigger_command or None,
        trigger_cooldown_s=ns.trigger_cooldown,
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = settings_from(argv)
    role = {
        PredictorSettings: "predictor",
        TransformerSettings: "transformer",
        MonitorSettings: "monitor",
    }[type(settings)]
    logs.configure(role)
    logs.silence_library_warnings()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from dex_serving.kserve_server import isolate_argv

    isolate_argv()
    try:
        if isinstance(settings, PredictorSettings):
            from dex_serving import predictor

            predictor.serve(settings)
        elif isinstance(settings, TransformerSettings):
            from dex_serving import transformer

            transformer.serve(settings)
        else:
            from dex_serving.monitor import service

            service.serve(settings)
    except Exception as exc:
        # One readable line saying why the process refuses to start (e.g. a contract mismatch).
        log.error(logs.kv(f"{role} failed to start", error=f"{type(exc).__name__}: {exc}"))
        log.debug("traceback", exc_info=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
