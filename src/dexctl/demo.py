"""``dexctl demo``: the local loop end to end on generated data.

reference batch -> features -> training (the first model becomes champion)
-> serve the champion (predictor + transformer + drift monitor) -> normal traffic: no drift
-> a drifted, later batch reaches the online store -> drifted traffic: the monitor flags it
   and its trigger runs the training pipeline -> the promotion gate decides champion vs
   challenger on the newest data -> registry table.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from dex.registry import TAG_DECISION, TAG_REASONS, VersionSummary
from dex.settings import DexSettings, get_settings
from dexctl.chatter import libraries_log, library_output

if TYPE_CHECKING:
    from dex.data import GeneratorConfig

console = Console()

BATCH_WEEKS = 8
FIRST_BATCH_START = datetime(2026, 1, 5, tzinfo=UTC)
RETRAIN_TIMEOUT_S = 1800.0


def demo(
    customers: int = typer.Option(5000, "--customers", "-n", min=100, help="Customers per batch."),
    trials: int = typer.Option(20, min=1, help="Optuna trials per training run."),
    drift: float = typer.Option(0.6, min=0.0, max=1.0, help="Drift of the second batch."),
    requests: int = typer.Option(1000, min=200, help="Entities scored per traffic phase."),
    seed: int = typer.Option(42),
) -> None:
    """Train, serve, detect drift, retrain through the monitor's trigger, show the registry."""
    from dex import features
    from dex.data import GeneratorConfig, generate, write_parquet
    from dexctl.models import versions_table
    from dexctl.pipeline import run_pipeline

    settings = get_settings()
    console.print(Rule("1. reference batch -> features"))
    first = GeneratorConfig(
        n_customers=customers, weeks=BATCH_WEEKS, seed=seed, start=FIRST_BATCH_START
    )
    batch = generate(first)
    write_parquet(batch, settings.data_dir)
    with library_output(libraries_log(settings)):
        services = features.apply(settings)
    end = FIRST_BATCH_START + timedelta(weeks=BATCH_WEEKS)
    with library_output(libraries_log(settings)):
        features.materialize(settings, start=FIRST_BATCH_START - timedelta(days=30), end=end)
    console.print(f"features applied ({', '.join(services)}) and materialized up to {end:%Y-%m-%d}")
    console.print(f"(Feast's and other libraries' output: {libraries_log(settings)})")

    console.print(Rule("2. training run 1"))
    run_pipeline("training", {"n_trials": trials, "seed": seed})

    # Only customers with activity have every online feature (the generator leaves a few
    # without, as real data would).
    keys = sorted(int(k) for k in batch.activity["customer_id"].unique())[:requests]
    second = GeneratorConfig(
        n_customers=customers,
        weeks=BATCH_WEEKS,
        seed=seed + 1,
        start=FIRST_BATCH_START + timedelta(weeks=BATCH_WEEKS),
        drift=drift,
    )
    serve_and_retrain(settings, keys, second, trials=trials, seed=seed)

    console.print(Rule("registry"))
    console.print(versions_table(settings.registered_model))
    newest = latest_version(settings.registered_model)
    if newest is not None:
        console.print(
            f"gate decision for v{newest.version}: [bold]{newest.tags.get(TAG_DECISION)}[/]"
            f" — {newest.tags.get(TAG_REASONS, '')}"
        )


def serve_and_retrain(
    settings: DexSettings, keys: list[int], drifted: GeneratorConfig, *, trials: int, seed: int
) -> None:
    """Serve the champion, show normal then drifted traffic, wait for the triggered retrain."""
    import os

    from dex import features
    from dex.data import generate, write_parquet
    from dex.features import feast_env
    from dex_serving.settings import DriftSettings
    from dexctl.local_runner import retrain_command
    from dexctl.local_serving import (
        LocalServing,
        LocalServingConfig,
        compute_drift,
        predict,
        wait_for_rows,
    )

    retrain = retrain_command({"n_trials": trials, "seed": seed})
    config = LocalServingConfig(
        model=f"models:/{settings.registered_model}@champion",
        tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
        feature_repo=settings.feature_repo,
        state_dir=settings.state / "serving",
        env=feast_env(settings),
        drift=DriftSettings(
            window=len(keys), min_rows=min(len(keys), 200), trigger_command=retrain
        ),
        log_file=settings.state / "logs" / "serving.log",
    )
    console.print(Rule("3. serve the champion: normal traffic"))
    with console.status("starting predictor, transformer and drift monitor"):
        serving = LocalServing(config)
        urls = serving.start()
    try:
        console.print(f"transformer {urls.predict_url} (logs: {config.log_file})")
        predictions = predict(urls, keys)
        console.print(predictions_table(predictions[:5]))
        wait_for_rows(urls, len(keys))
        console.print(drift_line(compute_drift(urls)))

        console.print(Rule("4. a drifted batch reaches the online store: drifted traffic"))
        write_parquet(generate(drifted), settings.data_dir, append=True)
        end = drifted.start + timedelta(weeks=drifted.weeks)
        with library_output(libraries_log(settings)):
            features.materialize(settings, start=drifted.start - timedelta(days=30), end=end)
        predict(urls, keys)
        wait_for_rows(urls, 2 * len(keys))
        results = compute_drift(urls)
        console.print(drift_line(results))
        if not any(bool(r.get("dataset_drift")) for r in results):
            console.print("[red]the monitor saw no drift; nothing to retrain[/]")
            raise typer.Exit(1)

        console.print(Rule("5. the monitor's trigger retrains; the promotion gate decides"))
        with console.status(f"waiting for the retraining run ({retrain})"):
            wait_for_new_version(settings, before=1, trigger_logs=config.state_dir / "monitor")
    finally:
        serving.stop()


def predictions_table(rows: list[dict[str, object]]) -> Table:
    table = Table(title="predictions (first 5)", title_justify="left")
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    return table


def drift_line(results: list[dict[str, object]]) -> str:
    parts = [
        f"v{r.get('version')}: drift share {float(str(r.get('drift_share', 0.0))):.2f}"
        f" ({'DRIFT' if r.get('dataset_drift') else 'no drift'})"
        for r in results
    ]
    return "monitor: " + "; ".join(parts or ["no window yet"])


def wait_for_new_version(settings: DexSettings, *, before: int, trigger_logs: Path) -> None:
    """Poll the registry until the triggered run registered a version, or its log says it failed."""
    from mlflow import MlflowClient

    from dex.registry import list_versions

    deadline = time.monotonic() + RETRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if len(list_versions(MlflowClient(), settings.registered_model)) > before:
            return
        for log in trigger_logs.rglob("trigger-*.log"):
            if "failed" in log.read_text(errors="replace"):
                console.print(log.read_text(errors="replace")[-3000:])
                raise typer.Exit(1)
        time.sleep(2.0)
    raise typer.Exit(1)


def latest_version(name: str) -> VersionSummary | None:
    from mlflow import MlflowClient

    from dex.registry import list_versions

    versions = list_versions(MlflowClient(), name)
    return versions[0] if versions else None
