"""`dexctl dev cluster up --node` / `status` / `down` from separate processes: `down` stops
a node another process started (from the recorded state), deletes its pods first, and
restores the machine."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dex_testing.devcluster import Assets, ClusterState, stop_recorded, take_snapshot
from dex_testing.devcluster.node import RUN_DIR
from dex_testing.devcluster.workloads import hello_manifests, wait_pod_ready

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="node")]

DEXCTL = Path(sys.executable).with_name("dexctl")


@pytest.fixture
def state_dir(node_assets: Assets, tmp_path: Path) -> Iterator[Path]:
    """A DEX state folder for the CLI; whatever happens, a cluster it recorded is stopped."""
    folder = tmp_path / "state"
    try:
        yield folder
    finally:
        recorded = folder / "devcluster" / "state.json"
        if recorded.exists():
            stop_recorded(ClusterState.model_validate_json(recorded.read_text()))


def _dexctl(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEX_STATE_DIR": str(state_dir), "COLUMNS": "200"}
    return subprocess.run(
        [str(DEXCTL), "dev", "cluster", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_up_node_status_down_restores_the_machine(state_dir: Path) -> None:
    work = state_dir / "devcluster" / "cluster"
    before = take_snapshot(work)

    up = _dexctl(state_dir, "up", "--node", "--no-images")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "waiting for node dex-node to be Ready" in up.stdout
    assert "node dex-node (198.18.2.1) Ready" in up.stdout

    status = _dexctl(state_dir, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Ready=True" in status.stdout
    for component in ("kube-scheduler", "containerd", "kubelet", "kube-proxy"):
        assert component in status.stdout

    from kubernetes import client, config

    state = ClusterState.model_validate_json((state_dir / "devcluster" / "state.json").read_text())
    assert state.node is not None
    with config.new_client_from_config(config_file=str(state.kubeconfig)) as api:
        core = client.CoreV1Api(api)
        pod, _ = hello_manifests("left-running", state.node.hello_image)
        core.create_namespaced_pod("default", pod)
        wait_pod_ready(core, "default", "left-running", timeout=60)

    down = _dexctl(state_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "machine restored" in down.stdout
    left = before.diff(take_snapshot(work))
    assert left == [], "\n".join(left)
    assert not RUN_DIR.exists()
    assert not work.exists()
