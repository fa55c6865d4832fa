"""``dexctl serve``: predictor + transformer + monitor for a registered model, locally."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from dex.settings import get_settings
from dex_serving.settings import DriftSettings
from dexctl.local_runner import retrain_command
from dexctl.options import settings_options

console = Console(stderr=True)


@settings_options(DriftSettings, "drift", defaults={"trigger_command": retrain_command()})
def serve_cmd(
    alias: str = typer.Option("champion", help="Registry alias to serve."),
    version: str = typer.Option(None, help="Serve this version instead of the alias."),
    protocol: str = typer.Option("v1", help="Transformer -> predictor protocol: v1 or v2."),
    feature_component: str = typer.Option(
        "transformer",
        help="Who reads the Feast features: transformer (in front of the predictor) or "
        "predictor (one process, one hop), as a DexModel's spec.features.component.",
    ),
    monitor: bool = typer.Option(True, help="Start the drift monitor and log inferences to it."),
    log_file: Path = typer.Option(None, help="Write the servers' logs here instead of stderr."),
    *,
    drift: dict[str, Any],
) -> None:
    """Serve the champion (or a version) with Feast online features; Ctrl-C stops."""
    from dex.features import feast_env
    from dex.registry import use_settings
    from dexctl.local_serving import LocalServing, LocalServingConfig

    if feature_component not in ("transformer", "predictor"):
        raise typer.BadParameter(
            f"must be transformer or predictor, got {feature_component!r}",
            param_hint="--feature-component",
        )
    settings = get_settings()
    use_settings(settings)
    model = settings.registered_model
    ref = f"models:/{model}/{version}" if version else f"models:/{model}@{alias}"
    config = LocalServingConfig(
        model=ref,
        tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
        registry_uri=os.environ.get("MLFLOW_REGISTRY_URI"),
        feature_repo=settings.feature_repo.resolve(),
        state_dir=settings.state / "serving",
        env=feast_env(settings),
        predictor_protocol="v2" if protocol == "v2" else "v1",
        feature_component="predictor" if feature_component == "predictor" else "transformer",
        monitor=monitor,
        drift=DriftSettings.model_validate(drift),
        log_file=log_file,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    servers = "predictor" if feature_component == "predictor" else "predictor, transformer"
    with console.status(f"starting {servers}{', monitor' if monitor else ''} for {ref}"):
        serving = LocalServing(config)
        try:
            urls = serving.start()
        except (RuntimeError, TimeoutError) as exc:
            console.print(f"[red]serving did not start:[/] {exc}")
            raise typer.Exit(1) from exc
    try:
        table = Table(title=f"serving {ref}")
        table.add_column("endpoint")
        table.add_column("url")
        table.add_row("V1 predict", urls.predict_url)
        table.add_row("V2 infer", urls.infer_url)
        table.add_row("predictor", urls.predictor)
        if urls.monitor:
            table.add_row("monitor", f"{urls.monitor}  (/metrics /drift /report)")
        console.print(table)
        console.print(
            f"try: curl -s -H 'content-type: application/json' {urls.predict_url} "
            """-d '{"instances": [{"customer_id": 1000}]}'"""
        )
        while True:
            for child in serving.children.values():
                child.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping")
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    finally:
        serving.stop()


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM (e.g. from a supervisor) stops the children as Ctrl-C does.
    raise KeyboardInterrupt
