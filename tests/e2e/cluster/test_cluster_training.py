"""Training and retraining in the cluster, as users run them: a DexPipeline applied with kubectl,
its steps executed by the real KFP backend and Argo's controller as pods of DEX's component
image on the dev node (``dex_testing.kfp_runtime``), reading the user's data from object
storage and Feast's definitions, tuning, training and registering in the platform's MLflow (the
dev overlay's, by its Service name); then the loop closed with nobody at the keyboard.

The data is the churn generator's, in an S3 bucket (the KFP stack's S3 server, standing for
the user's object store). Everything the steps need reaches them through the DexPipeline's
``spec.env``: MLflow's URL, the data's location, the S3 endpoint, and the credentials from a
Secret (``valueFrom.secretKeyRef``).

The loop: a DexModel follows ``churn-classifier@champion`` (the model the platform's monitor
watches, manifests/monitor) with features from the platform's Feast; a drifted batch reaches
the online store (written through Feast's feature server, as materialization does) and the
data lake; the traffic through the Gateway and the transformer carries it to the real DEX
monitor, whose drift share the DexPipeline's trigger reads; the run it starts trains on the new
data and the promotion gate moves ``champion``; the DexModel rolls the new version out as a
canary and promotes it. The test only writes data and sends predictions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pandas as pd
import pytest

from dex.data.churn import (
    CREATED,
    ENTITY_KEY,
    TIMESTAMP,
    ChurnDataset,
    GeneratorConfig,
    generate,
    write_parquet,
)
from dex_testing.crds import run_kubectl
from dex_testing.kfp_backend import NAMESPACE as KFP_NAMESPACE
from dex_testing.kfp_runtime import ARTIFACT_SECRET, OBJECT_STORE_URL, KFPRuntime
from dexctl.polling import GiveUpError, eventually

from .conftest import NAMESPACE, SERVING_RESOURCES, DexCluster, write_online

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(name="node")]

BUCKET = "dex-data"
MLFLOW_IN_CLUSTER = "http://mlflow.dex-system.svc.cluster.local:5000"
MONITOR_IN_CLUSTER = "http://dex-monitor.dex-system.svc:8080"
# The registered model the platform's monitor watches (manifests/monitor/deployment.yaml).
MODEL = "churn-classifier"
PIPELINE = "churn-training"
DEXMODEL = "churn"
THRESHOLD = 0.3  # the trigger's drift share
FIRST = GeneratorConfig(n_customers=800, weeks=4, seed=7)
# The next four weeks of the same customers, in a drifted world (the demo's second batch).
DRIFTED = GeneratorConfig(
    n_customers=800, weeks=4, seed=8, start=FIRST.start + timedelta(weeks=4), drift=0.6
)
SERVED = 250  # customers scored per phase: more than the monitor's min_rows (200)
VIEWS = {"customer_profile": "profiles", "customer_activity": "activity"}


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


def _s3(kfp: KFPRuntime) -> Any:
    return boto3.client(
        "s3", endpoint_url=kfp.backend.s3_url, region_name="us-east-1",
        aws_access_key_id="minio", aws_secret_access_key="minio123",
    )  # fmt: skip


def _upload(kfp: KFPRuntime, folder: Path) -> None:
    """The generator's three tables under ``folder``, as a user keeps them in object storage."""
    s3 = _s3(kfp)
    for name in ("customer_profiles", "customer_activity", "churn_labels"):
        s3.upload_file(str(folder / f"{name}.parquet"), BUCKET, f"churn/{name}.parquet")


def _secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ARTIFACT_SECRET, "key": key}}}


def _once_at(when: datetime) -> str:
    """A cron that matches one minute of the year: the first run, and no second one."""
    return f"{when.minute} {when.hour} {when.day} {when.month} *"


def _pipeline(schedule: str) -> dict[str, Any]:
    return {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexPipeline",
        "metadata": {"name": PIPELINE, "namespace": NAMESPACE},
        "spec": {
            "pipeline": {"name": "training"},
            "parameters": {
                "entity_source": f"s3://{BUCKET}/churn/churn_labels.parquet",
                "registered_model": MODEL,
                "experiment": "dex-e2e-training",
                "n_trials": "3",
                # Long enough that the three trials always finish: the same data gives the
                # same model, whatever the machine's load.
                "tune_timeout_s": "600",
            },
            "schedule": schedule,
            "triggers": [
                {"type": "drift", "dexModel": DEXMODEL, "threshold": THRESHOLD, "cooldown": "1h"}
            ],
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


def _status(cluster: DexCluster, kind: str, name: str) -> dict[str, Any]:
    return dict(cluster.kubectl.json(kind, name, "-n", NAMESPACE).get("status") or {})


def _mlflow(cluster: DexCluster, path: str, **params: str) -> Any:
    resp = httpx.get(f"{cluster.mlflow_url}/api/2.0/mlflow/{path}", params=params, timeout=30)
    resp.raise_for_status()
    return resp.json()


def _versions(cluster: DexCluster) -> dict[str, dict[str, Any]]:
    found = _mlflow(cluster, "model-versions/search", filter=f"name='{MODEL}'")
    return {v["version"]: v for v in found.get("model_versions", [])}


def _champion(cluster: DexCluster) -> str | None:
    resp = httpx.get(
        f"{cluster.mlflow_url}/api/2.0/mlflow/registered-models/alias",
        params={"name": MODEL, "alias": "champion"},
        timeout=30,
    )
    return str(resp.json()["model_version"]["version"]) if resp.status_code == 200 else None


@pytest.fixture(scope="module")
def trained(
    dex_cluster: DexCluster, kfp: KFPRuntime, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The number of the platform's model's first version, trained by the DexPipeline's
    schedule (one minute of the year, so exactly one run) on the first batch."""
    folder = tmp_path_factory.mktemp("lake")
    write_parquet(generate(FIRST), folder)
    _s3(kfp).create_bucket(Bucket=BUCKET)
    _upload(kfp, folder)
    # The next whole minute at least a minute away: the recurring run exists before it.
    at = (datetime.now(UTC) + timedelta(seconds=120)).replace(second=0, microsecond=0)
    dex_cluster.kubectl.apply(_pipeline(_once_at(at)))

    def last_run() -> dict[str, Any] | None:
        last = _status(dex_cluster, "dexpipeline", PIPELINE).get("lastRun") or {}
        if last.get("state") in {"FAILED", "CANCELED"}:
            raise GiveUpError(f"run {last.get('id')} {last['state']}: {_diagnose(kfp)}")
        return last if last.get("state") == "SUCCEEDED" else None

    try:
        run = eventually(last_run, timeout=1200, interval=5, what="status.lastRun SUCCEEDED")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_diagnose(kfp)}") from exc
    print(f"\ntraining run {run['id']}: {run.get('startedAt')} -> {run.get('finishedAt')}")
    # The one-off schedule is spent: remove it (the DexPipeline deletes its recurring run).
    dex_cluster.kubectl(
        "patch", "dexpipeline", PIPELINE, "-n", NAMESPACE, "--type=merge",
        "-p", json.dumps({"spec": {"schedule": None}}),
    )  # fmt: skip
    versions = _versions(dex_cluster)
    assert list(versions) == ["1"], versions
    return "1"


def test_a_scheduled_run_trains_in_pods_and_registers_the_champion(
    dex_cluster: DexCluster, trained: str
) -> None:
    version = _versions(dex_cluster)[trained]
    mlflow_run = _mlflow(dex_cluster, "runs/get", run_id=version["run_id"])["run"]
    metrics = {m["key"] for m in mlflow_run["data"].get("metrics", [])}
    assert metrics, mlflow_run
    # The first version passes the gates with no champion to beat.
    assert _champion(dex_cluster) == trained
    # No schedule left: the recurring run is gone from the status and from KFP.
    assert eventually(
        lambda: "recurringRunId" not in _status(dex_cluster, "dexpipeline", PIPELINE),
        timeout=90,
        interval=3,
        what="status.recurringRunId gone",
    )


def _latest(frame: pd.DataFrame, keys: list[int]) -> dict[str, list[Any]]:
    """Each customer's newest row of a table, as the online store holds it after
    materialization: the join key and the feature columns."""
    latest = frame.sort_values(TIMESTAMP).groupby(ENTITY_KEY).tail(1).set_index(ENTITY_KEY)
    columns = [c for c in latest.columns if c not in {TIMESTAMP, CREATED}]
    rows = latest.loc[keys, columns]
    return {c: rows[c].tolist() for c in columns}


def _to_online(cluster: DexCluster, batch: ChurnDataset, keys: list[int]) -> None:
    for view, table in VIEWS.items():
        write_online(cluster, view, {ENTITY_KEY: keys}, _latest(getattr(batch, table), keys))


def _predict(cluster: DexCluster, keys: list[int]) -> set[str]:
    """One V2 request per customer through the Gateway; the versions that answered."""
    host = f"{DEXMODEL}-{NAMESPACE}.example.com"
    served: set[str] = set()
    with httpx.Client(base_url=cluster.gateway_url, headers={"Host": host}, timeout=30) as http:
        for key in keys:
            body = {
                "inputs": [{"name": ENTITY_KEY, "datatype": "INT64", "shape": [1], "data": [key]}]
            }
            resp = http.post(f"/v2/models/{DEXMODEL}/infer", json=body)
            assert resp.status_code == 200, resp.text
            served.add(str(resp.json()["model_version"]))
    return served


def _trigger(cluster: DexCluster) -> dict[str, Any]:
    (trigger,) = _status(cluster, "dexpipeline", PIPELINE).get("triggers") or [{}]
    return dict(trigger)


def _events(cluster: DexCluster, kind: str, name: str) -> list[str]:
    events = cluster.kubectl.json(
        "events", "-n", NAMESPACE, "--field-selector",
        f"involvedObject.kind={kind},involvedObject.name={name}",
    )["items"]  # fmt: skip
    return [f"{e['reason']}: {e['message']}" for e in events]


def test_drift_in_the_online_store_retrains_and_rolls_out_a_new_champion(
    dex_cluster: DexCluster, kfp: KFPRuntime, trained: str, tmp_path: Path
) -> None:
    cluster, kubectl = dex_cluster, dex_cluster.kubectl
    first, drifted = generate(FIRST), generate(DRIFTED)
    # Customers with activity in both batches (the generator leaves a few without, as real
    # data would): every online feature exists for them before and after the drift.
    active = set(first.activity[ENTITY_KEY]) & set(drifted.activity[ENTITY_KEY])
    keys = sorted(int(k) for k in active)[:SERVED]
    _to_online(cluster, first, keys)
    kubectl.apply(
        {
            "apiVersion": "dex.dataenginex.io/v1alpha1",
            "kind": "DexModel",
            "metadata": {"name": DEXMODEL, "namespace": NAMESPACE},
            "spec": {
                "model": {"name": MODEL, "alias": "champion"},
                "features": {
                    "featureService": "churn_v1",
                    "entityKey": ENTITY_KEY,
                    "image": cluster.serving_image,
                },
                "serving": {
                    "image": cluster.serving_image,
                    "deploymentMode": "Standard",
                    "protocol": "v2",
                    "resources": SERVING_RESOURCES,
                    "logger": {"url": MONITOR_IN_CLUSTER},
                },
                "rollout": {"steps": [50], "interval": "20s"},
            },
        }
    )

    def serving(version: str) -> dict[str, Any] | None:
        status = _status(cluster, "dexmodel", DEXMODEL)
        wanted = status.get("phase") == "Promoted" and status.get("stableVersion") == version
        return status if wanted else None

    eventually(lambda: serving(trained), timeout=400, interval=3, what="v1 Promoted")
    monitor = f"http://{kubectl.cluster_ip('dex-system', 'dex-monitor')}:8080"

    def rows_at_least(count: int) -> int | None:
        rows = int(httpx.get(f"{monitor}/events/count", timeout=10).json()["rows"])
        return rows if rows >= count else None

    # Today's traffic: the world the champion was trained on. The trigger reads the share
    # and stays armed.
    assert _predict(cluster, keys) == {trained}
    eventually(lambda: rows_at_least(SERVED), timeout=120, what="the monitor's rows")
    armed = eventually(
        lambda: (t := _trigger(cluster)).get("driftShare") is not None and t,
        timeout=180,
        interval=3,
        what="the trigger reading v1's drift share",
    )
    assert armed["driftShare"] <= THRESHOLD, armed
    assert not armed.get("above"), armed
    assert not armed.get("crossings"), armed

    # A drifted batch lands: in the data lake (what retraining reads) and in the online store
    # (what serving reads). From here on nothing but traffic.
    began = time.monotonic()
    marks: dict[str, float] = {}
    lake = tmp_path / "lake"
    write_parquet(first, lake)
    write_parquet(drifted, lake, append=True)
    _upload(kfp, lake)
    _to_online(cluster, drifted, keys)
    for _ in range(3):
        _predict(cluster, keys)
    marks["drifted traffic sent"] = time.monotonic() - began

    crossed = eventually(
        lambda: (t := _trigger(cluster)).get("crossings") == 1 and t,
        timeout=240,
        interval=3,
        what="the drift trigger's first crossing",
    )
    marks["run started"] = time.monotonic() - began
    assert crossed["driftShare"] > THRESHOLD, crossed
    assert crossed["lastRunId"], crossed
    assert any(e.startswith("DriftTriggered:") for e in _events(cluster, "DexPipeline", PIPELINE))

    def run_done() -> dict[str, Any] | None:
        last = _status(cluster, "dexpipeline", PIPELINE).get("lastRun") or {}
        if last.get("id") != crossed["lastRunId"]:
            return None
        if last.get("state") in {"FAILED", "CANCELED"}:
            raise GiveUpError(f"run {last['id']} {last['state']}: {_diagnose(kfp)}")
        return last if last.get("state") == "SUCCEEDED" else None

    try:
        eventually(run_done, timeout=1200, interval=5, what="the retraining run SUCCEEDED")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_diagnose(kfp)}") from exc
    marks["run succeeded"] = time.monotonic() - began

    # The gate's decision is on the new version: trained on the drifted weeks, it beats the
    # champion on their holdout and takes the alias.
    versions = _versions(cluster)
    assert sorted(versions) == ["1", "2"], versions
    tags = {t["key"]: t["value"] for t in versions["2"].get("tags", [])}
    assert _champion(cluster) == "2", tags
    marks["champion moved"] = time.monotonic() - began

    def canary() -> dict[str, Any] | None:
        status = _status(cluster, "dexmodel", DEXMODEL)
        return status if status.get("canaryVersion") == "2" else None

    eventually(canary, timeout=120, interval=2, what="v2 as the canary")
    marks["canary started"] = time.monotonic() - began
    eventually(lambda: serving("2"), timeout=600, interval=3, what="v2 Promoted")
    marks["promoted"] = time.monotonic() - began
    # The route on v2 alone once the Gateway applied it.
    eventually(
        lambda: _predict(cluster, keys[:20]) == {"2"}, timeout=60, what="every answer from v2"
    )

    wall = marks["promoted"]
    cluster.timings["closed_loop_s"] = round(wall, 1)
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in marks.items())
    print(f"\nclosed loop, drift to promoted: {wall:.0f} s ({steps})")


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
