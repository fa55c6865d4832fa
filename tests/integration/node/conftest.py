"""Fixtures for tests that run a real node (containerd + kubelet + kube-proxy) on this machine.

A node needs root, Debian packages and the node binaries; ``node_assets`` installs and builds
what is missing (``make node`` does the same), so the tests work on a fresh machine. Node
tests share the ``node`` xdist group: a node is machine-wide, one at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dex_testing.devcluster import (
    Assets,
    ControlPlane,
    ControlPlaneConfig,
    HostSnapshot,
    check_tools,
    ensure_node_tools,
    find_assets,
    take_snapshot,
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def node_assets() -> Assets:
    if os.geteuid() != 0:
        message = "a real node needs root (mounts, links, iptables, cgroups)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    ensure_node_tools()
    assets = find_assets(build_if_missing=True)
    check_tools(assets)
    return assets


class NodeRun:
    """A cluster with a node, started by a test; the snapshot taken before it started."""

    def __init__(self, plane: ControlPlane, before: HostSnapshot, work: Path) -> None:
        self.plane = plane
        self.before = before
        self.work = work

    def stop_and_compare(self) -> list[str]:
        self.plane.stop()
        return self.before.diff(take_snapshot(self.work))


@pytest.fixture
def node_run(node_assets: Assets, tmp_path: Path) -> Iterator[NodeRun]:
    """Snapshot the machine, then hand over an unstarted node cluster; whatever the test
    does, the cluster is stopped afterwards (which restores the machine)."""
    work = tmp_path / "cluster"
    work.mkdir()
    before = take_snapshot(work)
    plane = ControlPlane(ControlPlaneConfig(node=True, work_dir=work), node_assets)
    try:
        yield NodeRun(plane, before, work)
    finally:
        plane.stop()


@pytest.fixture
def core_api(node_run: NodeRun) -> Iterator[Any]:
    """A kubernetes ``CoreV1Api`` for the node cluster; starts the cluster."""
    from kubernetes import client, config

    state = node_run.plane.start()
    api = config.new_client_from_config(config_file=str(state.kubeconfig))
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()
