"""``dexctl data``: the seeded churn data generator."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console

from dex.settings import get_settings

app = typer.Typer(help="Synthetic churn data (seeded, with a drift knob).", no_args_is_help=True)
console = Console()


@app.command("generate")
def generate_cmd(
    customers: int = typer.Option(5000, "--customers", "-n", min=1, help="Labelled customers."),
    weeks: int = typer.Option(8, min=2, help="Weekly activity snapshots."),
    seed: int = typer.Option(42, help="Random seed."),
    drift: float = typer.Option(0.0, min=0.0, max=1.0, help="0 = reference world, 1 = shifted."),
    start: datetime = typer.Option(datetime(2026, 1, 5), help="First snapshot date (UTC)."),
    append: bool = typer.Option(False, help="Append as a later batch instead of replacing."),
    first_id: int = typer.Option(1000, help="First customer id."),
) -> None:
    """Write customer_profiles / customer_activity / churn_labels Parquet files."""
    from dex.data import GeneratorConfig, generate, write_parquet

    settings = get_settings()
    config = GeneratorConfig(
        n_customers=customers,
        weeks=weeks,
        seed=seed,
        drift=drift,
        start=start.replace(tzinfo=start.tzinfo or UTC),
        first_customer_id=first_id,
    )
    paths = write_parquet(generate(config), settings.data_dir, append=append)
    for name, path in paths.items():
        console.print(f"{name:18} {path}")
