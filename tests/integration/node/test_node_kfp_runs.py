"""KFP runs that execute, on a real node: the KFP 2.17 backend, ML Metadata and Argo's workflow
controller (``dex_testing.kfp_runtime``) with the dev node running each step as pods — Argo's
executor, KFP's driver, and DEX's component image under KFP's launcher.

A two-step pipeline on the component image passes a Dataset from one step to the next. The
run turns SUCCEEDED in KFP through the persistence agent; every step ran in a pod of the image
its task names; the artifacts are in the object store and the executions in MLMD, where the
launcher put them. Nothing plays Argo's part here.
"""

# No `from __future__ import annotations`: KFP reads the components' real annotations.
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Output

from dex_components import COMPONENT_IMAGE
from dex_testing import SOURCE_ROOT
from dex_testing.crds import run_kubectl
from dex_testing.devcluster import (
    Assets,
    ControlPlane,
    ControlPlaneConfig,
    eventually,
    take_snapshot,
)
from dex_testing.devcluster.node import DEFAULT_IMAGES_DIR, NodeConfig
from dex_testing.kfp_backend import DRIVER_IMAGE, NAMESPACE
from dex_testing.kfp_runtime import KFPRuntime
from dex_testing.mlmd import find_mlmd
from dexctl.polling import GiveUpError

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="node")]

COMPONENTS = "dex-components"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def make_table(rows: int, table: Output[Dataset]) -> int:
    import pandas as pd

    pd.DataFrame({"x": range(rows)}).to_parquet(table.path)
    return rows


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def total(table: Input[Dataset], summary: Output[Dataset]) -> int:
    import pandas as pd

    value = int(pd.read_parquet(table.path)["x"].sum())
    with open(summary.path, "w") as out:
        out.write(str(value))
    return value


@dsl.pipeline(name="dex-node-steps")
def two_steps(rows: int = 10) -> None:
    made = make_table(rows=rows).set_caching_options(False)
    total(table=made.outputs["table"]).set_caching_options(False)


# MLMD's own client, in the MLMD venv: the run's executions as the launcher recorded them.
EXECUTIONS = r"""
import json, sys
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb
host, port, run_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = metadata_store.MetadataStore(pb.MetadataStoreClientConfig(host=host, port=port))
context = store.get_context_by_type_and_name("system.PipelineRun", run_id)
executions = store.get_executions_by_context(context.id) if context else []
print(json.dumps([
    {
        "name": e.custom_properties["task_name"].string_value,
        "state": pb.Execution.State.Name(e.last_known_state),
    }
    for e in executions
]))
"""


@pytest.fixture
def plane(node_assets: Assets, tmp_path: Path) -> Iterator[ControlPlane]:
    """A node cluster holding DEX's component image; stopping it must leave the machine as
    it was."""
    subprocess.run(
        ["bash", str(SOURCE_ROOT / "tools" / "images" / "build.sh"), COMPONENTS], check=True
    )
    archive = DEFAULT_IMAGES_DIR / f"{COMPONENTS}.oci.tar"
    work = tmp_path / "cluster"
    work.mkdir()
    before = take_snapshot(work)
    started = ControlPlane(
        ControlPlaneConfig(
            node=NodeConfig(image_archives=[archive]), work_dir=work, start_timeout=180
        ),
        node_assets,
    )
    try:
        started.start()
        yield started
    finally:
        started.stop()
    left = before.diff(take_snapshot(work))
    assert left == [], "\n".join(left)


@pytest.fixture
def runtime(plane: ControlPlane, tmp_path: Path) -> Iterator[KFPRuntime]:
    """KFP's runtime against the node cluster."""
    state = plane.state
    assert state is not None
    assert state.node is not None
    with KFPRuntime(
        state.kubeconfig,
        tmp_path / "kfp",
        node_ip=state.node.ip,
        containerd_socket=state.node.containerd_socket,
        component_image=f"localhost/dex/{COMPONENTS}:dev",
    ) as started:
        yield started


# A pod waiting for one of these never starts: fail at once, saying why.
CANNOT_START = {
    "CreateContainerConfigError", "CreateContainerError", "ErrImageNeverPull", "ErrImagePull",
    "ImagePullBackOff", "InvalidImageName",
}  # fmt: skip


def _stuck_pods(runtime: KFPRuntime) -> dict[str, str]:
    pods = json.loads(
        run_kubectl(runtime.kubeconfig, "get", "pods", "-n", NAMESPACE, "-o", "json").stdout
    )["items"]
    stuck: dict[str, str] = {}
    for pod in pods:
        status = pod.get("status") or {}
        for container in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in CANNOT_START:
                stuck[f"{pod['metadata']['name']}/{container['name']}"] = (
                    f"{waiting['reason']}: {waiting.get('message', '')}"
                )
    return stuck


def _diagnose(runtime: KFPRuntime, workflow: str) -> str:
    kubeconfig = runtime.kubeconfig
    parts = [
        run_kubectl(
            kubeconfig, "get", "nodes", "-o",
            "jsonpath={range .items[*]}{.metadata.name} taints={.spec.taints} "
            "conditions={.status.conditions}{end}",
            check=False,
        ).stdout,
        run_kubectl(kubeconfig, "get", "pods", "-n", NAMESPACE, "-o", "wide", check=False).stdout,
        run_kubectl(
            kubeconfig, "get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp", check=False
        ).stdout[-4000:],
        run_kubectl(
            kubeconfig, "get", "workflow", workflow, "-n", NAMESPACE, "-o", "jsonpath={.status}",
            check=False,
        ).stdout[-4000:],
        run_kubectl(
            kubeconfig, "logs", "-n", NAMESPACE, "-l", f"workflows.argoproj.io/workflow={workflow}",
            "--all-containers", "--tail=40", "--prefix", check=False,
        ).stdout[-8000:],
        runtime.controller.log.read_text(errors="replace")[-3000:],
    ]  # fmt: skip
    return "\n----\n".join(parts)


def test_a_kfp_run_executes_each_step_as_pods_of_the_component_image(
    plane: ControlPlane, runtime: KFPRuntime, tmp_path: Path
) -> None:
    import kfp

    package = tmp_path / "two_steps.yaml"
    compiler.Compiler().compile(two_steps, str(package))
    client = kfp.Client(host=runtime.url)
    created = client.create_run_from_pipeline_package(
        str(package),
        arguments={"rows": 10},
        run_name=f"steps-{uuid.uuid4().hex[:6]}",
        experiment_name="dex-node",
    )
    run_id = created.run_id

    def workflow_name() -> str | None:
        names = run_kubectl(
            runtime.kubeconfig, "get", "workflows", "-n", NAMESPACE,
            "-l", f"pipeline/runid={run_id}", "-o", "jsonpath={.items[*].metadata.name}",
        ).stdout.split()  # fmt: skip
        return names[0] if names else None

    workflow = eventually(workflow_name, timeout=60, what=f"the Workflow of run {run_id}")

    def finished() -> str | None:
        plane.check_alive()  # a dead controller manager or kubelet: pods would wait forever
        if stuck := _stuck_pods(runtime):
            raise GiveUpError(f"pods that cannot start: {stuck}")
        state = client.get_run(run_id).state
        return state if state in TERMINAL else None

    try:
        state = eventually(finished, timeout=420, interval=2, what=f"run {run_id} to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_diagnose(runtime, workflow)}") from exc
    assert state == "SUCCEEDED", _diagnose(runtime, workflow)

    # Each step ran in pods: drivers in KFP's driver image, the components in DEX's image
    # (KFP's launcher wraps it), each container exited 0.
    pods = json.loads(
        run_kubectl(
            runtime.kubeconfig, "get", "pods", "-n", NAMESPACE,
            "-l", f"workflows.argoproj.io/workflow={workflow}", "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    main_images: dict[str, str] = {}
    for pod in pods:
        (main,) = [c for c in pod["spec"]["containers"] if c["name"] == "main"]
        main_images[pod["metadata"]["name"]] = main["image"]
        for status in pod["status"]["containerStatuses"]:
            terminated: dict[str, Any] = status["state"].get("terminated") or {}
            assert terminated.get("exitCode") == 0, (pod["metadata"]["name"], status)
    assert sorted(main_images.values()).count(COMPONENT_IMAGE) == 2, main_images
    assert DRIVER_IMAGE in main_images.values(), main_images

    # The launcher put both Datasets in the object store under the run; the second step read
    # the first's and wrote sum(range(10)).
    s3 = boto3.client(
        "s3", endpoint_url=runtime.backend.s3_url, region_name="us-east-1",
        aws_access_key_id="minio", aws_secret_access_key="minio123",
    )  # fmt: skip
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket="mlpipeline", Prefix="v2/artifacts/dex-node-steps/").get(
            "Contents", []
        )
        if run_id in o["Key"]
    ]
    assert any(k.endswith("/table") for k in keys), keys
    (summary,) = [k for k in keys if k.endswith("/summary")]
    assert s3.get_object(Bucket="mlpipeline", Key=summary)["Body"].read() == b"45"

    # And MLMD holds the run's executions, complete, as KFP's UI reads them.
    mlmd = find_mlmd()
    done = subprocess.run(
        [str(mlmd.python), "-c", EXECUTIONS, runtime.mlmd.host, str(runtime.mlmd.port), run_id],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    executions = {e["name"]: e["state"] for e in json.loads(done.stdout)}
    assert executions.get("make-table") == "COMPLETE", executions
    assert executions.get("total") == "COMPLETE", executions
