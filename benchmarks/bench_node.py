"""Dev cluster with a real node: time to node Ready and to a pod Ready, teardown, memory.

Each run starts etcd + kube-apiserver + controller-manager + scheduler + containerd + kubelet
+ kube-proxy from scratch (``ControlPlaneConfig(node=True)``, as ``dexctl dev cluster up
--node``), creates the hello Pod + Service, waits until it is Ready and answers on its
ClusterIP, reads VmRSS of each process, then stops and checks the machine is as before.
Needs root and ``make node``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.measure import rss_mib
from dex_testing.devcluster import (
    ControlPlane,
    ControlPlaneConfig,
    check_tools,
    eventually,
    find_assets,
    take_snapshot,
)
from dex_testing.devcluster.workloads import hello_manifests, http_get, wait_pod_ready

RUNS = 2
SHORT = {
    "kube-apiserver": "apiserver",
    "kube-controller-manager": "kcm",
    "kube-scheduler": "sched",
    "kube-proxy": "proxy",
}


def _pods_rss_mib() -> float:
    """Shims and pod processes (everything in a kubepods cgroup or a containerd shim)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroups = (entry / "cgroup").read_text()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if "kubepods" in cgroups or comm.startswith("containerd-shim"):
            total += rss_mib(int(entry.name))
    return round(total, 1)


def _one_run(assets: Any, run: int) -> dict[str, object]:
    from kubernetes import client, config

    before = take_snapshot()
    plane = ControlPlane(ControlPlaneConfig(node=True), assets)
    try:
        state = plane.start()
        assert state.node is not None
        api = config.new_client_from_config(config_file=str(state.kubeconfig))
        with api:
            core = client.CoreV1Api(api)
            pod, service = hello_manifests("hello", state.node.hello_image)
            began = time.monotonic()
            core.create_namespaced_service("default", service)
            core.create_namespaced_pod("default", pod)
            wait_pod_ready(core, "default", "hello", timeout=60)
            pod_ready = time.monotonic() - began
            ip = core.read_namespaced_service("hello", "default").spec.cluster_ip
            eventually(lambda: http_get(f"http://{ip}/"), timeout=30, what="ClusterIP answers")
            service_ok = time.monotonic() - began
        rss = {p.name: rss_mib(p.pid) for p in state.processes}
        pods_rss = _pods_rss_mib()
    finally:
        began = time.monotonic()
        plane.stop()
        down = time.monotonic() - began
    left = before.diff(take_snapshot())
    timings = state.node.timings
    return {
        "bench": "node",
        "run": run,
        "up_s": timings.get("up_s"),
        "node_ready_s": timings.get("node_ready_s"),
        "images_s": timings.get("images_s"),
        "pod_ready_s": round(pod_ready, 2),
        "svc_ok_s": round(service_ok, 2),
        "down_s": round(down, 2),
        "restored": not left,
        "rss_mib": round(sum(rss.values()) + pods_rss, 1),
        **{f"{SHORT.get(name, name)}_mib": value for name, value in rss.items()},
        "pod+shim_mib": pods_rss,
    }


def run() -> list[dict[str, object]]:
    assets = find_assets()
    check_tools(assets)
    rows = [_one_run(assets, i + 1) for i in range(RUNS)]
    if not all(row["restored"] for row in rows):
        raise RuntimeError(f"the machine was not restored after a run: {rows}")
    return rows


if __name__ == "__main__":
    for row in run():
        sys.stdout.write(f"{row}\n")
