"""A real Kubernetes control plane (etcd + kube-apiserver [+ kube-controller-manager]) started
as local processes for tests and ``dexctl dev cluster``; binaries come from ``make envtest``."""

from dex_testing.devcluster.assets import Assets, MissingAssetsError, find_assets
from dex_testing.devcluster.cluster import (
    ClusterState,
    ControlPlane,
    ControlPlaneConfig,
    leftovers,
    stop_recorded,
)
from dex_testing.devcluster.kubeconfig import service_account_kubeconfig
from dexctl.polling import ConditionTimeoutError, eventually
from dexctl.processes import StartupError

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
