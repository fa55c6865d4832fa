"""``dexctl monitor``: the drift monitor alone, in the foreground."""

from __future__ import annotations

import os
from typing import Any

import typer

from dex.settings import get_settings
from dex_serving.settings import DriftSettings, MonitorSettings
from dexctl.local_runner import retrain_command
from dexctl.options import settings_options


@settings_options(
    MonitorSettings,
    "options",
    fields=("host", "http_port", *DriftSettings.model_fields),
    defaults={"trigger_command": retrain_command()},
)
def monitor_cmd(
    alias: str = typer.Option(
        "champion", help="Registry alias whose training data is the baseline."
    ),
    version: str = typer.Option(None, help="Use this version instead of the alias."),
    *,
    options: dict[str, Any],
) -> None:
    """Receive inference CloudEvents, store them, compute drift, trigger retraining."""
    from dex.registry import use_settings
    from dex_serving import logs
    from dex_serving.monitor import service

    settings = get_settings()
    use_settings(settings)
    model = settings.registered_model
    logs.configure("monitor")
    logs.silence_library_warnings()
    service.serve(
        MonitorSettings(
            model=f"models:/{model}/{version}" if version else f"models:/{model}@{alias}",
            tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
            registry_uri=os.environ.get("MLFLOW_REGISTRY_URI"),
            state_dir=settings.state / "serving" / "monitor",
            **options,
        )
    )
