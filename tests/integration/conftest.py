"""Shared integration fixtures: the real Kubernetes control plane.

``kube_cluster`` starts etcd + kube-apiserver + kube-controller-manager once per pytest
worker (built by ``make envtest``), or, with ``USE_EXISTING_CLUSTER=true``, uses the cluster
``KUBECONFIG`` names. Modules using it should carry

    pytestmark = [pytest.mark.integration, pytest.mark.controlplane,
                  pytest.mark.xdist_group(name="controlplane")]

so pytest-xdist (``--dist loadgroup``) runs them on one worker and it starts once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dex_testing.devcluster import (
    ClusterState,
    ControlPlane,
    ControlPlaneConfig,
    MissingAssetsError,
    find_assets,
)


class KubeCluster(BaseModel):
    kubeconfig: Path
    # None when the cluster is an existing one (USE_EXISTING_CLUSTER=true).
    started: ClusterState | None = None


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    if os.environ.get("USE_EXISTING_CLUSTER", "").lower() == "true":
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig or not Path(kubeconfig).is_file():
            pytest.fail("USE_EXISTING_CLUSTER=true needs KUBECONFIG naming one kubeconfig file")
        yield KubeCluster(kubeconfig=Path(kubeconfig))
        return
    try:
        assets = find_assets()
    except MissingAssetsError as exc:
        if _in_ci():
            pytest.fail(f"control plane unavailable in CI: {exc}")
        pytest.skip(str(exc))
    # KUBEBUILDER_ASSETS from setup-envtest has no controller-manager; tests that need its
    # garbage collector say so when it is missing.
    plane = ControlPlane(
        ControlPlaneConfig(controller_manager=assets.kube_controller_manager is not None), assets
    )
    try:
        yield KubeCluster(kubeconfig=plane.start().kubeconfig, started=plane.state)
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube_api(kube_cluster: KubeCluster) -> Iterator[Any]:
    """An admin ``kubernetes.client.ApiClient`` for the session's cluster."""
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture(scope="module")
def kfp_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The real KFP 2.17 API server with MariaDB and its S3 store on this session's cluster
    (``dex_testing.kfp_backend``; binaries from ``make kfp``). No Argo controller runs: a run
    becomes an Argo ``Workflow`` object, which is what the tests read."""
    from dex_testing.kfp_backend import KFPBackend, MissingKFPError, find_kfp

    try:
        find_kfp()
    except MissingKFPError as exc:
        # Never a skip: these tests exist to run against the real API server.
        pytest.fail(str(exc))
    cluster: KubeCluster = request.getfixturevalue("kube_cluster")
    with KFPBackend(cluster.kubeconfig, tmp_path_factory.mktemp("kfp")) as backend:
        yield backend


@pytest.fixture(scope="module")
def kfp_ui(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """KFP 2.17's own UI (``make kfp-ui``: built from its source) served on 127.0.0.1 against
    this module's ``kfp_backend`` (``dex_testing.kfp_ui``)."""
    from dex_testing.kfp_ui import KFPUI, MissingKFPUIError, find_kfp_ui

    try:
        find_kfp_ui()
    except MissingKFPUIError as exc:
        pytest.fail(str(exc))  # never a skip: these tests exist to open the real UI
    backend = request.getfixturevalue("kfp_backend")
    cluster: KubeCluster = request.getfixturevalue("kube_cluster")
    with KFPUI(backend.http_port, cluster.kubeconfig, tmp_path_factory.mktemp("kfp-ui")) as ui:
        yield ui


@pytest.fixture(scope="module")
def argocd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The real Argo CD 3.6 application controller and repo server, with Redis and a git
    daemon, on this session's cluster (``dex_testing.argocd``; binaries from ``make argocd``).
    A missing build fails in CI and skips elsewhere: building it takes minutes, once."""
    from dex_testing.argocd import ArgoCD, MissingArgoCDError, find_argocd

    try:
        find_argocd()
    except MissingArgoCDError as exc:
        if _in_ci():
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    cluster: KubeCluster = request.getfixturevalue("kube_cluster")
    with ArgoCD(cluster.kubeconfig, tmp_path_factory.mktemp("argocd")) as argo:
        yield argo
