"""``dexctl dev``: developer tooling (the local test control plane)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from dex_testing.devcluster import ClusterState

app = typer.Typer(help="Developer tooling: a local Kubernetes control plane.", no_args_is_help=True)
cluster_app = typer.Typer(
    help="A real etcd + kube-apiserver (+ controller-manager) on 127.0.0.1, in the background; "
    "with --node also a real node (containerd, kubelet, kube-proxy) whose pods run.",
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
    node: bool = typer.Option(
        False,
        help="Also run a real node: kube-scheduler, all controllers, containerd, kubelet and "
        "kube-proxy (root; one per machine; `down` restores the machine).",
    ),
    images: bool = typer.Option(
        True, help="With --node: import the image archives of `make images` (~/.cache/dex/images)."
    ),
    kfp: bool = typer.Option(
        False,
        help="Also run the Kubeflow Pipelines 2.17 backend against it: API server, MariaDB and "
        "an S3 store on 127.0.0.1 (make kfp), and KFP's UI when built (make kfp-ui); prints "
        "the API URL the KFP client uses and the UI's URL.",
    ),
    timeout: float = typer.Option(60.0, help="Seconds to wait for readiness."),
    build: bool = typer.Option(
        True, help="Build the binaries (make envtest; make node with --node) if missing."
    ),
) -> None:
    """Start the control plane detached and record it under the DEX state folder."""
    from dex_testing.devcluster import (
        ControlPlane,
        ControlPlaneConfig,
        MissingNodeToolsError,
        NodeBusyError,
        NodeConfig,
        StartupError,
        ensure_node_tools,
        find_assets,
        image_archives,
    )

    state = _load()
    if state is not None and _running(state):
        console.print(f"already running at {state.server}")
        console.print(f"export KUBECONFIG={state.kubeconfig}")
        return
    if state is not None:
        _clean(state)
    if node and build:
        ensure_node_tools()
    folder = _folder()
    config = ControlPlaneConfig(
        work_dir=folder / "cluster",
        controller_manager=controller_manager,
        start_timeout=timeout,
        detached=True,
        node=NodeConfig(image_archives=image_archives() if images else []) if node else None,
    )

    def progress(message: str) -> None:
        console.print(f"[dim]… {message}[/]")

    plane = ControlPlane(config, find_assets(build_if_missing=build), progress=progress)
    try:
        state = plane.start()
    except (NodeBusyError, MissingNodeToolsError, StartupError) as exc:
        # start() already stopped what it had started (and restored the machine).
        console.print(f"[red]dev cluster not started[/]: {exc}")
        raise typer.Exit(1) from None
    kfp_url, ui_url = _start_kfp(state, folder, timeout, progress) if kfp else (None, None)
    _state_file().write_text(state.model_dump_json(indent=2))
    console.print(f"{state.version} ready at {state.server} in {state.startup_seconds} s")
    if state.node is not None:
        timings = ", ".join(f"{k} {v} s" for k, v in state.node.timings.items())
        console.print(f"node {state.node.name} ({state.node.ip}) Ready: {timings}")
        console.print(f"images: {', '.join(state.node.images)}")
    if kfp_url:
        console.print(
            f"KFP API: {kfp_url} (kfp.Client(host=...); the KFP UI's ML_PIPELINE_SERVICE)"
        )
        console.print(f"KFP UI: {ui_url}" if ui_url else "KFP UI: not built (make kfp-ui)")
    console.print(f"export KUBECONFIG={state.kubeconfig}")


def _start_kfp(
    state: ClusterState, folder: Path, timeout: float, progress: Callable[[str], None]
) -> tuple[str, str | None]:
    """The KFP backend next to the control plane, and its UI when built, recorded with it so
    ``down`` stops them; their URLs (the UI's is None when it is not built)."""
    from dex_testing.kfp_backend import KFPBackend, MissingKFPError
    from dex_testing.kfp_ui import KFPUI, MissingKFPUIError, find_kfp_ui

    progress("starting the KFP backend (MariaDB, S3 store, API server)")
    backend = KFPBackend(
        state.kubeconfig, folder / "cluster" / "kfp", timeout=max(timeout, 120), detached=True
    )
    try:
        backend.start()
    except (MissingKFPError, RuntimeError) as exc:
        backend.stop()
        _clean(state)
        console.print(f"[red]dev cluster not started[/]: KFP backend: {exc}")
        raise typer.Exit(1) from None
    state.processes.extend(backend.records())
    state.ports.update(
        {
            "kfp-http": backend.http_port,
            "kfp-grpc": backend.grpc_port,
            "kfp-mariadb": backend.db_port,
            "kfp-s3": backend.s3_port,
        }
    )
    try:
        find_kfp_ui()
    except MissingKFPUIError:
        return backend.url, None
    progress("starting the KFP UI (its Node server, proxying to the API server)")
    ui = KFPUI(backend.http_port, state.kubeconfig, folder / "cluster" / "kfp-ui", detached=True)
    try:
        ui.start()
    except RuntimeError as exc:
        ui.stop()
        _clean(state)
        console.print(f"[red]dev cluster not started[/]: KFP UI: {exc}")
        raise typer.Exit(1) from None
    state.processes.extend(ui.records())
    state.ports["kfp-ui"] = ui.port
    return backend.url, ui.url


def _clean(state: ClusterState) -> None:
    from dex_testing.devcluster import stop_recorded

    stop_recorded(state)
    # The dev cluster is throw-away: fresh certificates and an empty etcd on every `up`.
    shutil.rmtree(state.work_dir, ignore_errors=True)
    _state_file().unlink(missing_ok=True)


@cluster_app.command("down")
def down() -> None:
    """Stop the processes `up` started and delete the cluster's folder; with a node, delete
    its pods first and restore the machine as it was before `up`."""
    from dex_testing.devcluster import take_snapshot

    state = _load()
    if state is None:
        console.print("no dev cluster recorded")
        return
    _clean(state)
    if state.node is not None:
        left = state.node.before.diff(take_snapshot(state.work_dir))
        if left:
            console.print("[yellow]the machine differs from before `up`:[/]")
            for line in left:
                console.print(f"  {line}")
            raise typer.Exit(1)
        console.print("machine restored (processes, mounts, links, iptables, cgroups, sysctls)")
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
    if state.node is not None:
        console.print(f"node {state.node.name}: {_node_summary(state)}")
        console.print(f"  started in: {state.node.timings}")
    if len(running) != len(state.processes):
        raise typer.Exit(1)


def _node_summary(state: ClusterState) -> str:
    """Ready condition and pod count, as the API server reports them (or why it cannot)."""
    from kubernetes import client, config

    assert state.node is not None
    try:
        api = config.new_client_from_config(config_file=str(state.kubeconfig))
    except Exception as exc:  # a broken kubeconfig is a status to show, not a crash
        return f"unknown ({exc})"
    with api:
        core = client.CoreV1Api(api)
        try:
            node = core.read_node(state.node.name)
            pods = core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={node.metadata.name}"
            )
        except Exception as exc:
            return f"unknown ({type(exc).__name__})"
    ready = next((c.status for c in node.status.conditions or [] if c.type == "Ready"), "?")
    return f"{state.node.ip} Ready={ready}, {len(pods.items)} pods, pod CIDR {state.node.pod_cidr}"


@cluster_app.command("kubeconfig")
def kubeconfig() -> None:
    """Print the admin kubeconfig path (e.g. `export KUBECONFIG=$(dexctl dev cluster kubeconfig)`)."""
    state = _load()
    if state is None:
        typer.echo("no dev cluster recorded; run `dexctl dev cluster up`", err=True)
        raise typer.Exit(1)
    typer.echo(str(state.kubeconfig))
