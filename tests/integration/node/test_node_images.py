"""DEX's own images run on the node: the dex-serving image (``make images``) imported into
containerd at start, run as a Job that Completes, its output read back through the kubelet."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dex_testing import SOURCE_ROOT
from dex_testing.devcluster import (
    Assets,
    ControlPlane,
    ControlPlaneConfig,
    NodeConfig,
    eventually,
    take_snapshot,
)
from dex_testing.devcluster.node import DEFAULT_IMAGES_DIR, RUN_DIR

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="node")]

BUILD = SOURCE_ROOT / "tools" / "images" / "build.sh"


@pytest.fixture(scope="module")
def serving_archive(node_assets: Assets) -> Path:
    """The dex-serving OCI archive, brought up to date (a no-op when the tree is unchanged)."""
    if not BUILD.exists():
        message = f"{BUILD} (make images) is not in this checkout"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    subprocess.run(["bash", str(BUILD), "dex-serving"], check=True)
    archive = DEFAULT_IMAGES_DIR / "dex-serving.oci.tar"
    assert archive.is_file(), f"{BUILD} left no {archive}"
    return archive


def _job(name: str, image: str, command: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": command,
                        }
                    ],
                }
            },
        },
    }


def _finished(batch: Any, name: str) -> str | None:
    job = batch.read_namespaced_job_status(name, "default")
    for condition in job.status.conditions or []:
        if condition.type in {"Complete", "Failed"} and condition.status == "True":
            return str(condition.type)
    return None


@pytest.fixture
def node_with_images(
    node_assets: Assets, serving_archive: Path, tmp_path: Path
) -> Iterator[tuple[ControlPlane, Any]]:
    work = tmp_path / "cluster"
    work.mkdir()
    before = take_snapshot(work)
    config = ControlPlaneConfig(
        node=NodeConfig(image_archives=[serving_archive]), work_dir=work, start_timeout=120
    )
    plane = ControlPlane(config, node_assets)
    try:
        yield plane, plane.start()
    finally:
        plane.stop()
    left = before.diff(take_snapshot(work))
    assert left == [], "\n".join(left)
    assert not RUN_DIR.exists()


def test_serving_image_runs_as_a_job(node_with_images: tuple[ControlPlane, Any]) -> None:
    from kubernetes import client, config

    _, state = node_with_images
    image = next(i for i in state.node.images if i.startswith("localhost/dex/dex-serving:"))
    with config.new_client_from_config(config_file=str(state.kubeconfig)) as api:
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        command = ["python", "-m", "dex_serving.run", "--help"]
        batch.create_namespaced_job("default", _job("serving-help", image, command))
        outcome = eventually(
            lambda: _finished(batch, "serving-help"), timeout=120, what="Job finished"
        )
        pods = core.list_namespaced_pod("default", label_selector="job-name=serving-help").items
        logs = core.read_namespaced_pod_log(pods[0].metadata.name, "default")
    assert outcome == "Complete", logs
    assert "usage" in logs.lower(), logs
