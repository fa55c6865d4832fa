"""The cluster e2e tier: DEX on a real node with the real KServe and a real Gateway, driven
only as a user drives it (``dex_testing.clusterstack`` says what runs). One stack per
module; stopping it must leave the machine as the snapshot before it found it. Node tests
share the ``node`` xdist group: a node is machine-wide.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dex_testing.clusterstack import (
    FEATURES,
    MODEL,
    NAMESPACE,
    SERVING_RESOURCES,
    DexCluster,
    StackUnavailableError,
    dex_stack,
    register_on_online_features,
    register_version,
    write_online,
)
from dex_testing.devcluster import take_snapshot
from dex_testing.devcluster.node import RUN_DIR

__all__ = [
    "FEATURES",
    "MODEL",
    "NAMESPACE",
    "SERVING_RESOURCES",
    "DexCluster",
    "register_on_online_features",
    "register_version",
    "write_online",
]


# Per module: a package-scoped stack outlived its package under xdist's loadgroup, and the
# node tests scheduled between its modules found the node taken.
@pytest.fixture(scope="module")
def dex_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DexCluster]:
    work = tmp_path_factory.mktemp("e2e-cluster")
    before = take_snapshot(work)
    timings: dict[str, float] = {}
    try:
        with dex_stack(work) as cluster:
            timings = cluster.timings
            yield cluster
    except StackUnavailableError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    finally:
        print(f"\ne2e cluster timings: {timings}")
    left = before.diff(take_snapshot(work))
    assert left == [], "\n".join(left)
    assert not RUN_DIR.exists()
