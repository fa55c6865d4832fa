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


@app.command("run")
def run_cmd(
    name: str = typer.Argument(..., help="training, evaluation or promotion"),
    local: bool = typer.Option(
        True, "--local/--no-local", help="Run through kfp.local (the only mode here)."
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="key=value pipeline parameter."),
) -> None:
    """Run a pipeline; each step is a fresh process, as in a cluster."""
    from dex_pipelines import pipelines
    from dexctl.local_runner import coerce

    if name not in pipelines():
        console.print(f"[red]unknown pipeline {name!r}[/]; choose from {sorted(pipelines())}")
        raise typer.Exit(2)
    if not local:
        console.print(
            "[red]only --local runs are supported by dexctl; submit the compiled YAML to KFP[/]"
        )
        raise typer.Exit(2)
    overrides: dict[str, object] = {}
    for item in param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            console.print(f"[red]bad --param {item!r}[/]: expected key=value")
            raise typer.Exit(2)
        overrides[key] = coerce(value)
    run_pipeline(name, overrides)
