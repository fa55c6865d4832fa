"""``dexctl demo``: the local loop end to end on generated data.

batch 1 (reference world) -> features -> training (first model becomes champion)
-> batch 2 (drifted, later in time) -> features -> training again: the promotion gate
decides champion vs challenger on the newest data -> registry table.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console
from rich.rule import Rule

from dex.registry import VersionSummary
from dex.settings import get_settings

console = Console()

BATCH_WEEKS = 8
FIRST_BATCH_START = datetime(2026, 1, 5, tzinfo=UTC)


def demo(
    customers: int = typer.Option(5000, "--customers", "-n", min=100, help="Customers per batch."),
    trials: int = typer.Option(20, min=1, help="Optuna trials per training run."),
    drift: float = typer.Option(0.6, min=0.0, max=1.0, help="Drift of the second batch."),
    seed: int = typer.Option(42),
) -> None:
    """Generate data, apply + materialize features, train twice, show the registry."""
    from dex import features
    from dex.cli.models import versions_table
    from dex.cli.pipeline import run_pipeline
    from dex.data import GeneratorConfig, generate, write_parquet

    settings = get_settings()
    console.print(Rule("1. reference batch -> features"))
    first = GeneratorConfig(
        n_customers=customers, weeks=BATCH_WEEKS, seed=seed, start=FIRST_BATCH_START
    )
    write_parquet(generate(first), settings.data_dir)
    services = features.apply(settings)
    end = FIRST_BATCH_START + timedelta(weeks=BATCH_WEEKS)
    features.materialize(settings, start=FIRST_BATCH_START - timedelta(days=30), end=end)
    console.print(f"features applied ({', '.join(services)}) and materialized up to {end:%Y-%m-%d}")

    console.print(Rule("2. training run 1"))
    run_pipeline("training", {"n_trials": trials, "seed": seed})

    console.print(Rule(f"3. drifted batch (drift={drift}) -> features"))
    second_start = FIRST_BATCH_START + timedelta(weeks=BATCH_WEEKS)
    second = GeneratorConfig(
        n_customers=customers, weeks=BATCH_WEEKS, seed=seed + 1, start=second_start, drift=drift
    )
    write_parquet(generate(second), settings.data_dir, append=True)
    end = second_start + timedelta(weeks=BATCH_WEEKS)
    features.materialize(settings, start=second_start - timedelta(days=30), end=end)

    console.print(Rule("4. training run 2: the promotion gate decides"))
    run_pipeline("training", {"n_trials": trials, "seed": seed})

    console.print(Rule("registry"))
    console.print(versions_table(settings.registered_model))
    newest = latest_version(settings.registered_model)
    if newest is not None:
        console.print(
            f"gate decision for v{newest.version}: [bold]{newest.tags.get('dex.decision')}[/]"
            f" — {newest.tags.get('dex.reasons', '')}"
        )


def latest_version(name: str) -> VersionSummary | None:
    from mlflow import MlflowClient

    from dex.registry import list_versions

    versions = list_versions(MlflowClient(), name)
    return versions[0] if versions else None
