"""A real node: pods run and are reachable by pod IP and ClusterIP from the host, and
stopping the cluster puts the machine back exactly as the snapshot before ``start`` saw it."""

from __future__ import annotations

from typing import Any

import pytest

from dex_testing.devcluster import eventually, take_snapshot
from dex_testing.devcluster.node import RUN_DIR
from dex_testing.devcluster.workloads import hello_manifests, http_get, wait_pod_ready

from .conftest import NodeRun

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="node")]

# Everything a snapshot compares; a running node with a pod must change each of them, or an
# equal snapshot after `stop` would prove nothing about that kind of leftover.
KINDS = ("process", "mount", "link", "address", "route", "iptables/", "ip6tables/", "cgroup")
KINDS_ALSO = ("sysctl", "path")


def test_pod_is_reachable_and_stop_restores_the_machine(node_run: NodeRun, core_api: Any) -> None:
    state = node_run.plane.state
    assert state is not None
    assert state.node is not None
    node = core_api.read_node(state.node.name)
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    assert {a.address for a in node.status.addresses if a.type == "InternalIP"} == {state.node.ip}

    pod, service = hello_manifests("hello", state.node.hello_image)
    core_api.create_namespaced_pod("default", pod)
    core_api.create_namespaced_service("default", service)
    running = wait_pod_ready(core_api, "default", "hello", timeout=60)
    cluster_ip = core_api.read_namespaced_service("hello", "default").spec.cluster_ip

    assert http_get(f"http://{running.status.pod_ip}:8080/") == "hello from hello\n"
    # Through kube-proxy's iptables rules (the Service's endpoints may lag readiness a moment).
    body = eventually(lambda: http_get(f"http://{cluster_ip}/"), timeout=30, what="ClusterIP")
    assert body == "hello from hello\n"

    changed = node_run.before.diff(take_snapshot(node_run.work))
    for kind in (*KINDS, *KINDS_ALSO):
        assert any(line.startswith(kind) for line in changed), f"the node changed no {kind}"

    images = node_run.work / "containerd" / "root"
    assert images.is_dir()
    left = node_run.stop_and_compare()
    assert left == [], "\n".join(left)
    assert not RUN_DIR.exists()
    # containerd's images and snapshots (gigabytes with DEX's images) go with the node; the
    # logs stay in the folder for whoever reads them.
    assert not images.exists()
    assert (node_run.work / "logs" / "kubelet.log").is_file()
