"""A real Kubernetes control plane (etcd + kube-apiserver [+ kube-controller-manager]) started
as local processes for tests and ``dexctl dev cluster``; binaries come from ``make envtest``."""

from dex.devcluster.assets import Assets, MissingAssetsError, find_assets
from dex.devcluster.cluster import (
    ClusterState,
    ControlPlane,
    ControlPlaneConfig,
    leftovers,
    stop_recorded,
)
from dex.devcluster.kubeconfig import service_account_kubeconfig
from dex.devcluster.polling import ConditionTimeoutError, eventually
from dex.devcluster.processes import StartupError

__all__ = [
    "Assets",
    "ClusterState",
    "ConditionTimeoutError",
    "ControlPlane",
    "ControlPlaneConfig",
    "MissingAssetsError",
    "StartupError",
    "eventually",
    "find_assets",
    "leftovers",
    "service_account_kubeconfig",
    "stop_recorded",
]
