"""``dexctl features``: Feast apply / materialize against the DEX state folder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console

from dex.settings import get_settings
from dexctl.chatter import libraries_log, library_output

app = typer.Typer(
    help="Feast feature repository: apply definitions, materialize online.", no_args_is_help=True
)
console = Console()


@app.command("apply")
def apply_cmd() -> None:
    """Register entities, sources, feature views and services (feast apply)."""
    from dex import features

    settings = get_settings()
    with console.status("feast apply"), library_output(libraries_log(settings)):
        services = features.apply(settings)
    console.print(
        f"[green]applied[/] {settings.feature_repo}: feature services {', '.join(services)}"
    )


@app.command("materialize")
def materialize_cmd(
    end: datetime = typer.Option(None, help="Materialize up to this time (default: now)."),
    start: datetime = typer.Option(None, help="Window start (default: two years before end)."),
) -> None:
    """Load the latest feature values into the online store."""
    from dex import features

    settings = get_settings()
    end_at = (end or datetime.now(UTC)).astimezone(UTC)
    with console.status("feast materialize"):
        start_at = start.astimezone(UTC) if start else end_at - timedelta(days=730)
        with library_output(libraries_log(settings)):
            features.materialize(settings, end=end_at, start=start_at)
    console.print(f"[green]materialized[/] online store up to {end_at.isoformat()}")
