"""The harness cleans up after itself: after stop() nothing it started runs or holds a port."""

from __future__ import annotations

import os

import pytest

from dex_testing.devcluster import ControlPlane, ControlPlaneConfig, find_assets, leftovers

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]


@pytest.mark.skipif(
    os.environ.get("USE_EXISTING_CLUSTER", "").lower() == "true",
    reason="the harness starts nothing when pointed at an existing cluster",
)
def test_stop_leaves_no_process_port_or_folder() -> None:
    assets = find_assets()
    with_kcm = assets.kube_controller_manager is not None
    plane = ControlPlane(ControlPlaneConfig(controller_manager=with_kcm), assets)
    with plane as state:
        names = [p.name for p in state.processes]
        assert names == ["etcd", "kube-apiserver", "kube-controller-manager"][: 2 + with_kcm]
        assert len(leftovers(state)) == len(state.processes) + len(state.ports)
        assert state.version.startswith("v1.")
    assert leftovers(state) == []
    for record in state.processes:
        with pytest.raises(ProcessLookupError):
            os.kill(record.pid, 0)
    assert not state.work_dir.exists()
