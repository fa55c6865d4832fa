"""The real KServe v0.20 controller on the session's control plane (``kube_cluster``): its
CRDs, its ConfigMap in Standard mode, its manager as a local process serving the mutating and
validating webhooks (``dex_testing.kserve_manager``; binary from ``make kserve``).

Without a node no pod runs, so no InferenceService becomes Ready here; what KServe writes
(defaults, refusals, Deployments, Services) is what these tests read.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dex_testing.devcluster import eventually
from dex_testing.kserve_manager import ISVC_CRD, KServeManager, MissingKServeError, find_kserve

# The shared helper sits next to this file (tests run with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))
from kservekit import Kubectl


@pytest.fixture(scope="module")
def kserve(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KServeManager]:
    try:
        find_kserve()
    except MissingKServeError as exc:
        # Never a skip (in CI a skip fails the run anyway): these tests exist to run against
        # the real controller. Checked before the control plane starts.
        pytest.fail(str(exc))
    cluster = request.getfixturevalue("kube_cluster")
    work = tmp_path_factory.mktemp("kserve")
    with KServeManager(Path(cluster.kubeconfig), work) as manager:
        yield manager


@pytest.fixture(scope="module")
def kubectl(kube_cluster: Any) -> Kubectl:
    return Kubectl(Path(kube_cluster.kubeconfig))


@pytest.fixture(scope="module")
def namespace(kserve: KServeManager, kubectl: Kubectl) -> Iterator[str]:
    """A scratch namespace; its InferenceServices are deleted while the manager still runs
    (KServe's finalizer is on them) before the namespace goes."""
    name = f"kserve-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", ISVC_CRD, "--all", "-n", name, "--wait=false")
    eventually(
        lambda: kubectl.json("get", ISVC_CRD, "-n", name)["items"] == [],
        timeout=60,
        what=f"InferenceServices in {name} gone",
    )
    kubectl("delete", "namespace", name, "--wait=false")
