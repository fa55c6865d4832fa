"""Operator integration fixtures on the real API server (``kube_cluster`` from the parent
conftest): CRDs installed with kubectl, a KServe-controller stand-in, a drift endpoint, and
the operator as a real subprocess."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dex_testing.gateway import Gateway, MissingGatewayError
from dex_testing.kserve_manager import MissingKServeError, find_kserve
from dex_testing.kserve_standin import KServeStandIn
from dex_testing.operator_process import OperatorProcess

# The shared helpers sit next to this file; test modules find them through pytest's rootdir
# insertion, this conftest may be imported before any of them.
sys.path.insert(0, str(Path(__file__).parent))
from opkit import CRD_DIR, DriftEndpoint, kubectl, scratch_namespace

from dex_testing.crds import wait_established
from dex_testing.devcluster import eventually
from dexctl.processes import free_ports


@pytest.fixture(scope="session")
def kubeconfig(kube_cluster: Any) -> Path:
    return Path(kube_cluster.kubeconfig)


@pytest.fixture(scope="session")
def crds(kubeconfig: Path) -> None:
    # KServe's real CRDs, from the module `make kserve` built its manager from. No node here:
    # the manager could never report an InferenceService Ready, so KServeStandIn plays that
    # part (the cluster e2e tier runs the manager itself, with real pods).
    try:
        kserve_crds = find_kserve().crd
    except MissingKServeError as exc:
        pytest.fail(str(exc))
    kubectl(kubeconfig, "apply", "--server-side", "-k", str(CRD_DIR))
    kubectl(kubeconfig, "apply", "--server-side", "-k", str(kserve_crds))
    wait_established(
        kubeconfig,
        [
            "dexmodels.dex.dataenginex.io",
            "dexpipelines.dex.dataenginex.io",
            "inferenceservices.serving.kserve.io",
        ],
    )
    # Discovery of freshly established CRDs lags a little; kopf and kubectl need it.
    eventually(
        lambda: (
            "dexmodels"
            in kubectl(
                kubeconfig, "api-resources", "--api-group", "dex.dataenginex.io", check=False
            ).stdout
        ),
        timeout=30,
        what="dexmodels in discovery",
    )


@pytest.fixture(scope="session")
def gateway(
    kubeconfig: Path, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A real Gateway API data plane (Traefik, ``make gateway``): it accepts the DexModels'
    HTTPRoutes, which is what makes a Standard-mode weight count as applied. No node here,
    so its backends have no endpoints; nothing is sent through it in this tier."""
    try:
        with Gateway(kubeconfig, tmp_path_factory.mktemp("gateway")) as running:
            yield running
    except MissingGatewayError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def namespace(kubeconfig: Path, crds: None) -> Iterator[str]:
    with scratch_namespace(kubeconfig, "dex-op") as name:
        yield name


@pytest.fixture(scope="module")
def kserve(kubeconfig: Path, crds: None) -> Iterator[KServeStandIn]:
    with KServeStandIn(kubeconfig, ready_after=0.3) as standin:
        yield standin


@pytest.fixture(scope="module")
def drift() -> Iterator[DriftEndpoint]:
    endpoint = DriftEndpoint()
    endpoint.thread.start()
    yield endpoint
    endpoint.server.shutdown()


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture(scope="module")
def operator_factory(
    kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
    drift: DriftEndpoint,
    gateway: Gateway,
) -> Iterator[OperatorFactory]:
    """Start ``python -m dex_operator`` processes; all are stopped at module end."""
    started: list[OperatorProcess] = []
    logs = tmp_path_factory.mktemp("operator-logs")

    def start(*, kubeconfig_path: Path | None = None, **env: str) -> OperatorProcess:
        metrics, liveness = free_ports(2)
        full_env = {
            "DEX_RESYNC_SECONDS": "0.5",
            "DEX_REGISTRY_POLL_SECONDS": "1",
            "DEX_MONITOR_URL": drift.url,
            "DEX_METRICS_PORT": str(metrics),
            "DEX_LIVENESS_PORT": str(liveness),
            "DEX_KSERVE_NAMESPACE": "kserve",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **env,
        }
        proc = OperatorProcess(
            kubeconfig_path or kubeconfig, logs / f"operator-{len(started)}.log", full_env
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
