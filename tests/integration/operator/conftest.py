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

from dex_testing.kserve_standin import KServeStandIn
from dex_testing.operator_process import OperatorProcess

# The shared helpers sit next to this file; test modules find them through pytest's rootdir
# insertion, this conftest may be imported before any of them.
sys.path.insert(0, str(Path(__file__).parent))
from opkit import CRD_DIR, ISVC_CRD, DriftEndpoint, kubectl, scratch_namespace

from dex_testing.devcluster import eventually
from dexctl.processes import free_ports


@pytest.fixture(scope="session")
def kubeconfig(kube_cluster: Any) -> Path:
    return Path(kube_cluster.kubeconfig)


@pytest.fixture(scope="session")
def crds(kubeconfig: Path) -> None:
    kubectl(kubeconfig, "apply", "--server-side", "-k", str(CRD_DIR))
    kubectl(kubeconfig, "apply", "--server-side", "-f", str(ISVC_CRD))
    for name in (
        "dexmodels.dex.dataenginex.io",
        "dexpipelines.dex.dataenginex.io",
        "inferenceservices.serving.kserve.io",
    ):
        kubectl(kubeconfig, "wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
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
    kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory, drift: DriftEndpoint
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
