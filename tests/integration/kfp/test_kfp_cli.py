"""`dexctl dev cluster up --kfp` from a separate process: the KFP API and UI answer at the
printed URLs, `status` lists their processes, and `down` stops them with the control plane, leaving no
process or port behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dex_testing.devcluster import ClusterState, leftovers, stop_recorded
from dex_testing.kfp_backend import MissingKFPError, find_kfp
from dex_testing.kfp_ui import MissingKFPUIError, find_kfp_ui

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

DEXCTL = Path(sys.executable).with_name("dexctl")


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    try:
        find_kfp()
        find_kfp_ui()
    except (MissingKFPError, MissingKFPUIError) as exc:
        pytest.fail(str(exc))
    folder = tmp_path / "state"
    try:
        yield folder
    finally:
        recorded = folder / "devcluster" / "state.json"
        if recorded.exists():
            stop_recorded(ClusterState.model_validate_json(recorded.read_text()))


def _dexctl(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEX_STATE_DIR": str(state_dir), "COLUMNS": "200"}
    return subprocess.run(
        [str(DEXCTL), "dev", "cluster", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_up_kfp_status_down(state_dir: Path) -> None:
    up = _dexctl(state_dir, "up", "--kfp")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "starting the KFP backend" in up.stdout
    found = re.search(r"KFP API: (http://127\.0\.0\.1:\d+)", up.stdout)
    assert found, up.stdout
    assert httpx.get(f"{found.group(1)}/apis/v2beta1/healthz", timeout=5).status_code == 200
    # The UI (make test builds it): its app, and the API through its proxy.
    ui = re.search(r"KFP UI: (http://127\.0\.0\.1:\d+)", up.stdout)
    assert ui, up.stdout
    assert "<title>Kubeflow Pipelines</title>" in httpx.get(ui.group(1), timeout=5).text
    assert httpx.get(f"{ui.group(1)}/apis/v2beta1/healthz", timeout=5).status_code == 200

    status = _dexctl(state_dir, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    for component in ("mariadb", "moto", "kfp-apiserver", "kfp-ui"):
        assert component in status.stdout
    state = ClusterState.model_validate_json((state_dir / "devcluster" / "state.json").read_text())

    down = _dexctl(state_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(state) == []
    assert not state.work_dir.exists()
