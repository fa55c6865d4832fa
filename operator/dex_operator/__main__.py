"""``python -m dex_operator``: run the operator (what the container's entrypoint does).

Equivalent to ``kopf run -m dex_operator.handlers`` with our settings: JSON logs, the
liveness endpoint, the Prometheus metrics server, standalone (one replica, no peering).
"""

from __future__ import annotations

import sys

# kopf imports the `kubernetes` package wherever it is importable, only to recognise its
# model classes: ~80 MiB resident that the operator never uses (its API client is kubeapi).
# The image does not install it; a development environment does (the tests use it), so the
# process keeps it out, to run as the image does.
sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]

import logging  # noqa: E402

import kopf  # noqa: E402
from prometheus_client import start_http_server  # noqa: E402


def configure_logging(level: str) -> None:
    """JSON logs; ``level`` (DEX_LOG_LEVEL) governs the operator's own loggers."""
    kopf.configure(
        verbose=False, quiet=level in ("WARNING", "ERROR"), log_format=kopf.LogFormat.JSON
    )
    logging.getLogger("dex_operator").setLevel(level)
    # kopf logs every successful handler at INFO; at thousands of objects that
    # is noise and CPU, so only DEBUG (dev) shows it. Rollout decisions are logged by
    # dex_operator and posted as Events.
    logging.getLogger("kopf.objects").setLevel("INFO" if level == "DEBUG" else "WARNING")
    # httpx logs every request at INFO: every API call (kubeapi) and registry query.
    logging.getLogger("httpx").setLevel("INFO" if level == "DEBUG" else "WARNING")


def main() -> None:
    from dex_operator import handlers, pipeline_handlers  # noqa: F401  (importing registers the handlers)
    from dex_operator.config import CONFIG

    cfg = CONFIG
    configure_logging(cfg.log_level)
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port, addr=cfg.bind_host)
    liveness = f"http://{cfg.bind_host}:{cfg.liveness_port}/healthz" if cfg.liveness_port else None
    kopf.run(
        standalone=True,
        clusterwide=not cfg.namespaces,
        namespaces=cfg.namespaces,
        liveness_endpoint=liveness,
    )


if __name__ == "__main__":
    main()
