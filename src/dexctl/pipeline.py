"""``dexctl pipeline``: compile the shipped pipelines and run them locally."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from dex.settings import get_settings

if TYPE_CHECKING:
    from dexctl.local_runner import RunResult, StepProgress

app = typer.Typer(help="KFP pipelines: compile to IR YAML, run locally.", no_args_is_help=True)
console = Console()

_STYLE = {"pending": "dim", "running": "yellow", "succeeded": "green", "failed": "bold red"}


def progress_table(name: str, steps: list[StepProgress]) -> Table:
    table = Table(title=f"pipeline {name}", title_justify="left")
    table.add_column("step")
    table.add_column("state")
    table.add_column("seconds", justify="right")
    for step in steps:
        seconds = step.seconds
        table.add_row(
            step.name,
            f"[{_STYLE[step.state]}]{step.state}[/]",
            f"{seconds:.1f}" if seconds is not None else "",
        )
    return table


@app.command("compile")
def compile_cmd(
    check: bool = typer.Option(False, help="Fail if the committed YAML differs (CI)."),
) -> None:
    """Compile training / evaluation / promotion to pipelines/dex_pipelines/compiled/*.yaml."""
    import tempfile
    from pathlib import Path

    from dex_pipelines.catalog import COMPILED_DIR, compile_all

    if not check:
        for path in compile_all():
            console.print(f"compiled {path}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        stale = [
            p.name
            for p in compile_all(Path(tmp))
            if not (COMPILED_DIR / p.name).exists()
            or (COMPILED_DIR / p.name).read_text() != p.read_text()
        ]
    if stale:
        console.print(f"[red]stale compiled pipelines[/]: {stale}; run `dexctl pipeline compile`")
        raise typer.Exit(1)
    console.print("compiled pipelines are current")


def run_pipeline(name: str, overrides: dict[str, object], quiet: bool = False) -> RunResult:
    from dexctl.local_runner import PipelineFailedError, default_parameters, run_local

    settings = get_settings()
    params = {**default_parameters(name, settings), **overrides}
    with Live(
        progress_table(name, []), console=console, refresh_per_second=4, transient=quiet
    ) as live:
        try:
            result = run_local(
                name, params, settings, on_progress=lambda s: live.update(progress_table(name, s))
            )
        except PipelineFailedError as failure:
            console.line()
            console.print(f"[bold red]pipeline {name} failed[/]: {failure.result.error}")
            console.print(f"full log: {failure.result.log_path}")
            raise typer.Exit(1) from failure
    console.line()  # a non-terminal Live leaves the cursor after the table's last border
    console.print(
        f"[green]pipeline {name} succeeded[/] in {result.seconds:.1f}s (log: {result.log_path})"
    )
    return result


def parameters_table(name: str, local_values: dict[str, object]) -> Table:
    """A pipeline's parameters: type, the pipeline's default, and what a local run passes
    (from dex.yaml / DEX_* settings)."""
    from dex_pipelines.catalog import parameters

    inputs = parameters(name)
    table = Table(title=f"parameters of pipeline {name} (set with -p NAME=VALUE)")
    table.add_column("parameter")
    table.add_column("type")
    table.add_column("default")
    table.add_column("local run")
    for param, spec in inputs.items():
        default = "(required)" if spec.default is None and not spec.optional else repr(spec.default)
        local = repr(local_values[param]) if param in local_values else ""
        table.add_row(param, str(spec.type), default, local)
    return table


# Click answers --help before arguments are parsed, so a plain --help could not know which
# pipeline's parameters to list: this command handles its own.
@app.command("run", context_settings={"help_option_names": []})
def run_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="training, evaluation or promotion"),
    local: bool = typer.Option(
        True, "--local/--no-local", help="Run through kfp.local (the only mode here)."
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="key=value pipeline parameter."),
    show_help: bool = typer.Option(
        False, "--help", "-h", help="Show this message, and with NAME the pipeline's parameters."
    ),
) -> None:
    """Run a pipeline; each step is a fresh process, as in a cluster.

    `dexctl pipeline run NAME --help` lists NAME's parameters with types and defaults.
    """
    from dex_pipelines import pipelines
    from dexctl.local_runner import coerce, default_parameters

    if show_help or name is None:
        console.print(ctx.get_help())
        if name in pipelines():
            console.print(parameters_table(name, default_parameters(name, get_settings())))
        raise typer.Exit(0 if show_help else 2)
    if name not in pipelines():
        console.print(f"[red]unknown pipeline {name!r}[/]; choose from {sorted(pipelines())}")
        raise typer.Exit(2)
    if not local:
        console.print(
            "[red]only --local runs are supported by dexctl; submit the compiled YAML to KFP[/]"
        )
        raise typer.Exit(2)
    from dex_pipelines.catalog import parameters

    known = parameters(name)
    overrides: dict[str, object] = {}
    for item in param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            console.print(f"[red]bad --param {item!r}[/]: expected key=value")
            raise typer.Exit(2)
        if key not in known:
            console.print(
                f"[red]unknown parameter {key!r} of pipeline {name}[/]; "
                f"`dexctl pipeline run {name} --help` lists them"
            )
            raise typer.Exit(2)
        overrides[key] = coerce(value)
    run_pipeline(name, overrides)
