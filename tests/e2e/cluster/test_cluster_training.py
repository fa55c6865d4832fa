"""The shipped training pipeline runs in the cluster, as a user starts it: a DexPipeline applied
with kubectl, its steps executed by the real KFP backend and Argo's controller as pods of DEX's
component image on the dev node (``dex_testing.kfp_runtime``), reading the user's data from
object storage and Feast's definitions, tuning, training and registering in the platform's
MLflow (the dev overlay's, by its Service name).

The data is the churn generator's, in an S3 bucket (the KFP stack's S3 server, standing for
the user's object store). Everything the steps need reaches them through the DexPipeline's
``spec.env``: MLflow's URL, the data's location, the S3 endpoint, and the credentials from a
Secret (``valueFrom.secretKeyRef``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from dex.data.churn import GeneratorConfig, generate, write_parquet
from dex_testing.crds import run_kubectl
from dex_testing.kfp_backend import NAMESPACE as KFP_NAMESPACE
from dex_testing.kfp_runtime import ARTIFACT_SECRET, OBJECT_STORE_URL, KFPRuntime
from dexctl.polling import GiveUpError, eventually

from .conftest import NAMESPACE, DexCluster

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(name="node")]

BUCKET = "dex-data"
MLFLOW_IN_CLUSTER = "http://mlflow.dex-system.svc.cluster.local:5000"


@pytest.fixture(scope="module")
def kfp(dex_cluster: DexCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KFPRuntime]:
    with KFPRuntime(
        dex_cluster.kubectl.kubeconfig,
        tmp_path_factory.mktemp("kfp"),
        node_ip=dex_cluster.node_ip,
        containerd_socket=dex_cluster.containerd_socket,
        component_image="localhost/dex/dex-components:dev",
    ) as runtime:
        yield runtime


def _upload_data(kfp: KFPRuntime, folder: Path) -> None:
    """The churn generator's three tables, as a user keeps them in object storage."""
    paths = write_parquet(generate(GeneratorConfig(n_customers=800, weeks=4, seed=7)), folder)
    s3 = boto3.client(
        "s3", endpoint_url=kfp.backend.s3_url, region_name="us-east-1",
        aws_access_key_id="minio", aws_secret_access_key="minio123",
    )  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    for name, path in paths.items():
        s3.upload_file(str(path), BUCKET, f"churn/{name}.parquet")


def _secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ARTIFACT_SECRET, "key": key}}}


def test_the_training_pipeline_runs_as_pods_and_registers_in_the_platforms_mlflow(
    dex_cluster: DexCluster, kfp: KFPRuntime, tmp_path: Path
) -> None:
    kubectl = dex_cluster.kubectl
    _upload_data(kfp, tmp_path / "data")
    model = f"churn-trained-{uuid.uuid4().hex[:6]}"
    name = "retrain"
    pipeline = {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexPipeline",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "pipeline": {"name": "training"},
            "parameters": {
                "entity_source": f"s3://{BUCKET}/churn/churn_labels.parquet",
                "registered_model": model,
                "experiment": "dex-e2e-training",
                "n_trials": "3",
                "tune_timeout_s": "60",
            },
            # Every minute: the first run starts within one; suspended once it has run.
            "schedule": "* * * * *",
            "env": [
                {"name": "MLFLOW_TRACKING_URI", "value": MLFLOW_IN_CLUSTER},
                {"name": "DEX_DATA_DIR", "value": f"s3://{BUCKET}/churn"},
                {"name": "AWS_ENDPOINT_URL", "value": OBJECT_STORE_URL},
                {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
                {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
                _secret_env("AWS_ACCESS_KEY_ID", "accesskey"),
                _secret_env("AWS_SECRET_ACCESS_KEY", "secretkey"),
            ],
            "kfp": {"experiment": "dex-e2e"},
        },
    }
    kubectl.apply(pipeline)

    def last_run() -> dict[str, Any] | None:
        status = kubectl.json("dexpipeline", name, "-n", NAMESPACE).get("status") or {}
        last = status.get("lastRun") or {}
        if last.get("state") in {"FAILED", "CANCELED"}:
            raise GiveUpError(f"run {last.get('id')} {last['state']}: {_diagnose(kfp)}")
        return last if last.get("state") == "SUCCEEDED" else None

    try:
        run = eventually(last_run, timeout=1200, interval=5, what="status.lastRun SUCCEEDED")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_diagnose(kfp)}") from exc
    finally:
        kubectl("patch", "dexpipeline", name, "-n", NAMESPACE, "--type=merge",
                "-p", json.dumps({"spec": {"suspend": True}}))  # fmt: skip
    print(f"\ntraining run {run['id']}: {run.get('startedAt')} -> {run.get('finishedAt')}")

    # The platform's MLflow holds the version this run trained and registered, with its
    # holdout metrics on the training run.
    versions = httpx.get(
        f"{dex_cluster.mlflow_url}/api/2.0/mlflow/model-versions/search",
        params={"filter": f"name='{model}'"},
        timeout=30,
    ).json()["model_versions"]
    assert len(versions) == 1, versions
    mlflow_run = httpx.get(
        f"{dex_cluster.mlflow_url}/api/2.0/mlflow/runs/get",
        params={"run_id": versions[0]["run_id"]},
        timeout=30,
    ).json()["run"]
    metrics = {m["key"] for m in mlflow_run["data"].get("metrics", [])}
    assert metrics, mlflow_run


def _diagnose(kfp: KFPRuntime) -> str:
    """The run's pods, each failed step's own log, and the controller's last words."""
    kubeconfig = kfp.kubeconfig
    pods = json.loads(
        run_kubectl(kubeconfig, "get", "pods", "-n", KFP_NAMESPACE, "-o", "json").stdout
    )["items"]
    parts = [run_kubectl(kubeconfig, "get", "pods", "-n", KFP_NAMESPACE, check=False).stdout]
    for pod in pods:
        if pod["status"].get("phase") == "Failed":
            name = pod["metadata"]["name"]
            parts.append(
                run_kubectl(
                    kubeconfig, "logs", "-n", KFP_NAMESPACE, name, "-c", "main", "--tail=60",
                    check=False,
                ).stdout[-8000:]
            )  # fmt: skip
    parts.append(kfp.controller.log.read_text(errors="replace")[-2000:])
    return "\n----\n".join(parts)
