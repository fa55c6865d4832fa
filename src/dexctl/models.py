"""``dexctl models``: what the MLflow registry holds."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from dex.contract import TAG_FEATURE_SERVICE
from dex.registry import TAG_DECISION
from dex.settings import get_settings

app = typer.Typer(help="Registered models, versions, aliases and metrics.", no_args_is_help=True)
console = Console()

KEY_METRICS = {"holdout_roc_auc": "auc", "holdout_f1": "f1", "holdout_drift_share": "drift"}


def versions_table(name: str | None = None) -> Table:
    from mlflow import MlflowClient

    from dex.registry import list_versions, use_settings

    use_settings(get_settings())
    table = Table(title="registered model versions", title_justify="left")
    for column in ("model", "v", "aliases", "decision", *KEY_METRICS.values(), "features"):
        table.add_column(column, no_wrap=column != "model")
    for v in list_versions(MlflowClient(), name):
        table.add_row(
            v.name,
            v.version,
            ", ".join(v.aliases),
            v.tags.get(TAG_DECISION, ""),
            *(f"{v.metrics[m]:.3f}" if m in v.metrics else "" for m in KEY_METRICS),
            v.tags.get(TAG_FEATURE_SERVICE, ""),
        )
    return table


@app.command("list")
def list_cmd(
    name: str = typer.Option(None, "--name", help="Only this registered model."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Registered models with versions, aliases and key metrics."""
    from mlflow import MlflowClient

    from dex.registry import list_versions, use_settings

    use_settings(get_settings())
    if as_json:
        print(json.dumps([v.model_dump() for v in list_versions(MlflowClient(), name)], indent=2))
        return
    console.print(versions_table(name))
