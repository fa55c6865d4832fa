"""Cluster DNS on a real node: CoreDNS (``make coredns``) on the node IP answers for
``cluster.local``, a pod resolves a Service by its full and its short name, over UDP and TCP,
to the Service's ClusterIP and gets a 200 through it; stopping the cluster stops CoreDNS and
leaves the machine as it was."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from dex_testing.devcluster import dns, eventually, leftovers
from dex_testing.devcluster.images import ImageSpec, write_oci_archive
from dex_testing.devcluster.node import RUN_DIR, ctr
from dex_testing.devcluster.workloads import hello_manifests, http_get, wait_pod_ready

from .conftest import NodeRun

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="node")]

NAMESPACE = "dns-target"
PROBE_IMAGE = "localhost/dex/dnsprobe:test"


def _probe_pod(names: list[str]) -> dict[str, Any]:
    """dnsprobe (tools/coredns/probe, built next to CoreDNS): resolves each name from the
    pod's own resolv.conf, over UDP and TCP, then GETs http://<name>/; one JSON line each."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dnsprobe"},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "probe",
                    "image": PROBE_IMAGE,
                    "imagePullPolicy": "Never",
                    "args": ["-port", "80", *names],
                }
            ],
        },
    }


def test_pod_resolves_services_by_name(node_run: NodeRun, core_api: Any) -> None:
    state = node_run.plane.state
    assert state is not None
    assert state.node is not None
    probe = dns.folder() / "dnsprobe"
    assert os.access(probe, os.X_OK), f"no {probe}: run `make coredns`"
    assert any(p.name == "coredns" for p in state.processes)

    # The Service in its own namespace; the probe pod in `default`, so the short name
    # <svc>.<ns> needs the pod's `svc.cluster.local` search domain.
    core_api.create_namespace({"metadata": {"name": NAMESPACE}})
    pod, service = hello_manifests("hello", state.node.hello_image)
    core_api.create_namespaced_pod(NAMESPACE, pod)
    core_api.create_namespaced_service(NAMESPACE, service)
    wait_pod_ready(core_api, NAMESPACE, "hello", timeout=60)
    cluster_ip = core_api.read_namespaced_service("hello", NAMESPACE).spec.cluster_ip
    # Endpoints and kube-proxy's rules may lag the pod's readiness a moment.
    eventually(lambda: http_get(f"http://{cluster_ip}/"), timeout=30, what="ClusterIP answers")

    archive = write_oci_archive(
        ImageSpec(name=PROBE_IMAGE, binary=probe, entrypoint="/dnsprobe"),
        node_run.work / "images" / "dnsprobe.tar",
    )
    ctr(state.node.containerd_socket, "images", "import", str(archive))
    full, short, missing = (
        f"hello.{NAMESPACE}.svc.cluster.local",
        f"hello.{NAMESPACE}",
        f"nosuch.{NAMESPACE}",
    )
    core_api.create_namespaced_pod("default", _probe_pod([full, short, missing]))

    def finished() -> Any:
        phase = core_api.read_namespaced_pod("dnsprobe", "default").status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    assert eventually(finished, timeout=60, what="dnsprobe finished") == "Succeeded"
    lines = [
        json.loads(line)
        for line in core_api.read_namespaced_pod_log("dnsprobe", "default").splitlines()
        if line.startswith("{")
    ]
    resolv_conf = lines[0]["resolv_conf"]
    assert f"nameserver {state.node.ip}" in resolv_conf, resolv_conf
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv_conf
    assert "ndots:5" in resolv_conf
    results = {r["name"]: r for r in lines[1:]}
    for name in (full, short):
        got = results[name]
        assert got["errors"] == [], got
        assert got["addrs"] == [cluster_ip], got
        assert got["tcp_addrs"] == [cluster_ip], got
        assert got["status"] == 200, got
        assert got["body"] == "hello from hello\n", got
    # No Service of that name (NXDOMAIN in each cluster.local search domain), and the bare
    # name lies outside the served zones: CoreDNS refuses it (nothing is forwarded).
    assert results[missing]["addrs"] == [], results[missing]
    assert any(f"on {state.node.ip}:53" in e for e in results[missing]["errors"]), results[missing]

    left = node_run.stop_and_compare()
    assert left == [], "\n".join(left)
    assert leftovers(state) == []
    assert not RUN_DIR.exists()
