"""Entry point of ``dexctl``. Sub-commands live in one module each and import heavy
libraries lazily, so ``dexctl --help`` stays fast."""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from dexctl import data, demo, features, models, pipeline
from dexctl import init as init_cli
from dexctl import monitor as monitor_cli
from dexctl import operator as operator_cli
from dexctl import serve as serve_cli

app = typer.Typer(
    name="dexctl",
    help="DEX: features -> training pipelines -> registry -> serving, on a laptop or a cluster.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _main() -> None:
    # Library warnings (SQLAlchemy inside MLflow, Feast's experimental notices) are not
    # actionable for a dexctl user: they go to the state folder's log, DEX's own stay.
    import os

    from rich.console import Console

    from dex.settings import PROJECT_FILE_VARIABLE, ProjectFileError, get_settings
    from dexctl.chatter import libraries_log, route_library_warnings

    try:
        settings = get_settings()
    except (ProjectFileError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        Console(stderr=True).print(f"[red]project settings:[/] {exc}")
        raise typer.Exit(2) from exc
    if settings.project_path is not None:
        # Processes dexctl starts (pipeline steps, the monitor's retrain) read the same file
        # wherever they run.
        os.environ.setdefault(PROJECT_FILE_VARIABLE, str(settings.project_path))
    route_library_warnings(libraries_log(settings))


app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(models.app, name="models")
app.add_typer(operator_cli.app, name="operator")
app.command("demo")(demo.demo)
app.command("init")(init_cli.init_cmd)
app.command("serve")(serve_cli.serve_cmd)
app.command("monitor")(monitor_cli.monitor_cmd)

# Plugins add command groups, as kubectl's do: `dexctl dev` comes from the test-support
# distribution (dataenginex-testing), which the product must not import.
for plugin in entry_points(group="dexctl.plugins"):
    app.add_typer(plugin.load(), name=plugin.name)


if __name__ == "__main__":  # pragma: no cover
    app()
