"""``dexctl monitor``: the drift monitor alone, in the foreground."""

from __future__ import annotations

import os

import typer

from dex.settings import get_settings

DEFAULT_TRIGGER = "dexctl pipeline run training --local"


def monitor_cmd(
    alias: str = typer.Option(
        "champion", help="Registry alias whose training data is the baseline."
    ),
    version: str = typer.Option(None, help="Use this version instead of the alias."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8082),
    window: int = typer.Option(10_000, help="Drift window: latest N served rows."),
    min_rows: int = typer.Option(200, help="No verdict on fewer rows."),
    method: str = typer.Option("wasserstein", help="Evidently per-feature drift method."),
    threshold: float = typer.Option(0.1, help="Per-feature drift threshold."),
    drift_share: float = typer.Option(0.5, help="Share of drifted features that is dataset drift."),
    interval: float = typer.Option(10.0, help="Seconds between drift computations."),
    trigger: str = typer.Option(DEFAULT_TRIGGER, help="Command run on drift ('' disables)."),
    cooldown: float = typer.Option(600.0, help="Seconds between two triggers."),
) -> None:
    """Receive inference CloudEvents, store them, compute drift, trigger retraining."""
    from dex.registry import configure_mlflow
    from dex_serving import logs
    from dex_serving.monitor import service
    from dex_serving.settings import MonitorSettings

    settings = get_settings()
    configure_mlflow(settings)
    model = settings.registered_model
    logs.configure("monitor")
    logs.silence_library_warnings()
    service.serve(
        MonitorSettings(
            model=f"models:/{model}/{version}" if version else f"models:/{model}@{alias}",
            tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
            registry_uri=os.environ.get("MLFLOW_REGISTRY_URI"),
            state_dir=settings.state / "serving" / "monitor",
            host=host,
            http_port=port,
            window=window,
            min_rows=min_rows,
            method=method,
            threshold=threshold,
            drift_share=drift_share,
            interval_s=interval,
            trigger_command=trigger or None,
            trigger_cooldown_s=cooldown,
        )
    )
