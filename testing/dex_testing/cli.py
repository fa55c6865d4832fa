"""``dexctl dev``: developer tooling (the local test control plane)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from dex_testing.devcluster import ClusterState

app = typer.Typer(help="Developer tooling: a local Kubernetes control plane.", no_args_is_help=True)
cluster_app = typer.Typer(
    help="A real etcd + kube-apiserver (+ controller-manager) on 127.0.0.1, in the background.",
    no_args_is_help=True,
)
app.add_typer(cluster_app, name="cluster")

console = Console()


def _folder() -> Path:
    from dex.settings import DexSettings

    return DexSettings().state / "devcluster"


def _state_file() -> Path:
    return _folder() / "state.json"


def _load() -> ClusterState | None:
    from dex_testing.devcluster import ClusterState

    path = _state_file()
    if not path.exists():
        return None
    return ClusterState.model_validate_json(path.read_text())


def _running(state: ClusterState) -> list[str]:
    from dexctl.processes import is_running

    return [p.name for p in state.processes if is_running(p)]


@cluster_app.command("up")
def up(
    controller_manager: bool = typer.Option(
        True, help="Run kube-controller-manager (garbage collector + namespace controllers)."
    ),
    timeout: float = typer.Option(60.0, help="Seconds to wait for readiness."),
    build: bool = typer.Option(True, help="Build the binaries (make envtest) if missing."),
) -> None:
    """Start the control plane detached and record it under the DEX state folder."""
    from dex_testing.devcluster import ControlPlane, ControlPlaneConfig, find_assets

    state = _load()
    if state is not None and _running(state):
        console.print(f"already running at {state.server}")
        console.print(f"export KUBECONFIG={state.kubeconfig}")
        return
    if state is not None:
        _clean(state)
    folder = _folder()
    config = ControlPlaneConfig(
        work_dir=folder / "cluster",
        controller_manager=controller_manager,
        start_timeout=timeout,
        detached=True,
    )
    state = ControlPlane(config, find_assets(build_if_missing=build)).start()
    _state_file().write_text(state.model_dump_json(indent=2))
    console.print(f"{state.version} ready at {state.server} in {state.startup_seconds} s")
    console.print(f"export KUBECONFIG={state.kubeconfig}")


def _clean(state: ClusterState) -> None:
    from dex_testing.devcluster import stop_recorded

    stop_recorded(state)
    # The dev cluster is throw-away: fresh certificates and an empty etcd on every `up`.
    shutil.rmtree(state.work_dir, ignore_errors=True)
    _state_file().unlink(missing_ok=True)


@cluster_app.command("down")
def down() -> None:
    """Stop the processes `up` started and delete the cluster's folder."""
    state = _load()
    if state is None:
        console.print("no dev cluster recorded")
        return
    _clean(state)
    console.print("stopped")


@cluster_app.command("status")
def status() -> None:
    """Report whether the recorded control plane is running."""
    from rich.table import Table

    state = _load()
    if state is None:
        console.print("no dev cluster recorded")
        raise typer.Exit(1)
    running = set(_running(state))
    table = Table("component", "pid", "running", "log")
    for proc in state.processes:
        table.add_row(
            proc.name, str(proc.pid), "yes" if proc.name in running else "NO", str(proc.log)
        )
    console.print(
        f"{state.version} at {state.server} (started {state.started_at:%Y-%m-%d %H:%M:%S} UTC)"
    )
    console.print(f"kubeconfig: {state.kubeconfig}")
    console.print(table)
    if len(running) != len(state.processes):
        raise typer.Exit(1)


@cluster_app.command("kubeconfig")
def kubeconfig() -> None:
    """Print the admin kubeconfig path (e.g. `export KUBECONFIG=$(dexctl dev cluster kubeconfig)`)."""
    state = _load()
    if state is None:
        typer.echo("no dev cluster recorded; run `dexctl dev cluster up`", err=True)
        raise typer.Exit(1)
    typer.echo(str(state.kubeconfig))
