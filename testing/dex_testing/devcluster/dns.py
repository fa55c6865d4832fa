"""Cluster DNS for a dev cluster with a node: CoreDNS (``make coredns``) as a host process.

What a cluster's kube-dns/CoreDNS Deployment does, without a pod: CoreDNS's ``kubernetes``
plugin serves the zone ``cluster.local`` (Services, their endpoints, pod A records) and the
reverse zones, from the API server, listening on the node IP port 53 (UDP and TCP), where
every pod reaches it (the CNI routes the node IP). The kubelet names it (``clusterDNS``), so
a ``ClusterFirst`` pod gets ``nameserver <node ip>``, ``search <ns>.svc.cluster.local
svc.cluster.local cluster.local`` and ``options ndots:5``; the kubelet's ``resolvConf`` stays
empty: the host's resolvers and search domains are nothing a pod could reach (no route out),
so nothing is inherited and nothing is forwarded. A name outside the served zones is
REFUSED at once instead of timing out.

CoreDNS authenticates as ServiceAccount ``kube-system/coredns`` with the ClusterRole
``system:coredns`` CoreDNS's own manifests grant (list/watch Services, EndpointSlices,
Endpoints, Pods, Namespaces): a token from the TokenRequest API in a kubeconfig, as the
Deployment's pod would have. Its health and readiness endpoints listen on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from dex_testing import SOURCE_ROOT
from dex_testing.devcluster.kubeconfig import service_account_kubeconfig
from dex_testing.devcluster.node import MissingNodeToolsError

BUILD_SCRIPT = SOURCE_ROOT / "tools" / "coredns" / "build.sh"
ZONE = "cluster.local"
PORT = 53
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "coredns"
CLUSTER_ROLE = "system:coredns"
# A dev cluster may stay up for days (`dexctl dev cluster up`); the kubelet would rotate a
# pod's token, a host process cannot, so it asks for a long-lived one.
TOKEN_SECONDS = 30 * 24 * 3600

RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "resources": ["endpoints", "services", "pods", "namespaces"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["list", "watch"],
    },
]


class MissingCoreDNSError(MissingNodeToolsError):
    """CoreDNS is not built (``make coredns``)."""


def folder() -> Path:
    """The folder tools/coredns/build.sh builds into (it computes it: one definition)."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def binary() -> Path:
    """The CoreDNS binary; :class:`MissingCoreDNSError` naming the make target if absent."""
    path = folder() / "coredns"
    if not os.access(path, os.X_OK):
        raise MissingCoreDNSError(
            f"CoreDNS (the dev node's cluster DNS) is not built: no {path}; run `make coredns`"
        )
    return path


def ensure_built() -> None:
    """Build CoreDNS if it is missing (what ``make coredns`` runs)."""
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)


def grant(admin_kubeconfig: Path, out: Path) -> Path:
    """ClusterRole ``system:coredns``, ServiceAccount ``kube-system/coredns`` bound to it, and
    a kubeconfig acting as that ServiceAccount (written to ``out``)."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = config.new_client_from_config(config_file=str(admin_kubeconfig))
    try:
        role = {"metadata": {"name": CLUSTER_ROLE}, "rules": RULES}
        try:
            client.RbacAuthorizationV1Api(api).create_cluster_role(role)
        except ApiException as exc:
            if exc.status != 409:
                raise
    finally:
        api.close()
    return service_account_kubeconfig(
        admin_kubeconfig,
        namespace=NAMESPACE,
        name=SERVICE_ACCOUNT,
        out=out,
        cluster_role=CLUSTER_ROLE,
        expiration_seconds=TOKEN_SECONDS,
    )


def corefile(path: Path, *, node_ip: str, kubeconfig: Path, health: int, ready: int) -> Path:
    """The Corefile: one server block for the cluster zone and the reverse zones."""
    text = f"""\
{ZONE}:{PORT} in-addr.arpa:{PORT} ip6.arpa:{PORT} {{
    bind {node_ip}
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes {ZONE} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        ttl 30
    }}
    cache 30
    loop
    loadbalance
}}
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def is_ready(ready_port: int) -> bool:
    """CoreDNS's ``ready`` plugin: 200 once the kubernetes plugin has synced with the API."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ready_port}/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
