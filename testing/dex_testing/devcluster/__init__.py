"""A real Kubernetes control plane (etcd + kube-apiserver [+ kube-controller-manager]) started
as local processes for tests and ``dexctl dev cluster``; binaries come from ``make envtest``.
With ``ControlPlaneConfig(node=True)`` it also runs a real node (``make node``) whose pods
run, and stopping it restores the machine (``hoststate``)."""

from dex_testing.devcluster.assets import Assets, MissingAssetsError, find_assets
from dex_testing.devcluster.cluster import (
    ClusterState,
    ControlPlane,
    ControlPlaneConfig,
    leftovers,
    stop_recorded,
)
from dex_testing.devcluster.hoststate import HostSnapshot, take_snapshot
from dex_testing.devcluster.kubeconfig import service_account_kubeconfig
from dex_testing.devcluster.node import (
    MissingNodeToolsError,
    NodeBusyError,
    NodeConfig,
    NodeState,
    check_tools,
    ensure_node_tools,
    image_archives,
)
from dexctl.polling import ConditionTimeoutError, eventually
from dexctl.processes import StartupError

__all__ = [
    "Assets",
    "ClusterState",
    "ConditionTimeoutError",
    "ControlPlane",
    "ControlPlaneConfig",
    "HostSnapshot",
    "MissingAssetsError",
    "MissingNodeToolsError",
    "NodeBusyError",
    "NodeConfig",
    "NodeState",
    "StartupError",
    "check_tools",
    "ensure_node_tools",
    "eventually",
    "find_assets",
    "image_archives",
    "leftovers",
    "service_account_kubeconfig",
    "stop_recorded",
    "take_snapshot",
]
