"""The real KFP 2.17 API server on the session's control plane (``kube_cluster``), with its
MariaDB and S3 store (``dex_testing.kfp_backend``; binaries from ``make kfp``).

No Argo controller runs here: a run becomes an Argo ``Workflow`` object in the cluster, which
is what these tests read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dex_testing.kfp_backend import KFPBackend, MissingKFPError, find_kfp


@pytest.fixture(scope="module")
def kfp_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KFPBackend]:
    try:
        find_kfp()
    except MissingKFPError as exc:
        # Never a skip: these tests exist to run against the real API server.
        pytest.fail(str(exc))
    cluster: Any = request.getfixturevalue("kube_cluster")
    with KFPBackend(Path(cluster.kubeconfig), tmp_path_factory.mktemp("kfp")) as backend:
        yield backend
