"""DEX operator at scale, on the real test control plane with the operator as a subprocess.

* apply -> InferenceService created: p50/p99 over 100 DexModels applied one by one (target
  p99 < 1 s), measured from the create call returning to the ISVC's ADDED watch event.
* time to reconcile 500 DexModels created at once until all report phase Promoted
  (target < 15 s), next to two floors, each the same end state with no operator:
  - the fewest writes any controller needs: 20 threads make each DexModel's
    InferenceService and HTTPRoute (rendered by the operator's own functions, sent with its
    own HTTP client) as soon as it is created, and one status write each once KServe and
    the Gateway report them (heard from two watches);
  - the operator's writes with no framework around them: the same, plus the status Pending
    then Promoted (a PUT each, as the operator's) and its Deploying and Promoted Events.
  The operator's time over the second is kopf's and the operator's own Python; the second
  over the first is what reporting progress to users costs. The KServe controller is stood
  in for by ``KServeStandIn`` (no node: nothing could run its pods); the Gateway accepting
  each DexModel's HTTPRoute is Traefik. Each floor's namespace is deleted before the next
  run, which then begins from the same empty cluster.
* operator RSS with 1000 DexModels reconciled (target < 120 MB).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from benchmarks.measure import percentile, rss_mib
from dex_operator import MODEL_LABEL, events, isvc, kubeapi, route
from dex_operator.config import OperatorConfig
from dex_operator.crd.models import DexModelSpec, DexModelStatus, InferenceServiceStatus
from dex_operator.rollout import Plan, Target, set_condition
from dex_testing import SOURCE_ROOT
from dex_testing.crds import wait_established
from dex_testing.devcluster import ControlPlane, ControlPlaneConfig, eventually, find_assets
from dex_testing.gateway import Gateway
from dex_testing.kserve_manager import find_kserve
from dex_testing.kserve_standin import KServeStandIn
from dex_testing.operator_process import OperatorProcess
from dexctl.processes import free_ports

REPO = SOURCE_ROOT
GROUP, VERSION = "dex.dataenginex.io", "v1alpha1"
SCALE = 500


def _dexmodel(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DexModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"storageUri": f"s3://bench/{name}"},
            "serving": {"deploymentMode": "Standard"},
        },
    }


def _wait_promoted(api: client.CustomObjectsApi, ns: str, count: int, timeout: float) -> None:
    """Returns once ``count`` DexModels in ``ns`` report phase Promoted, from a watch: a LIST
    of every DexModel each second cost the API server and this process about two seconds
    of CPU per run, on the two cores the operator and the API server share."""
    listed = api.list_namespaced_custom_object(GROUP, VERSION, ns, "dexmodels")
    promoted = {
        i["metadata"]["name"]
        for i in listed["items"]
        if (i.get("status") or {}).get("phase") == "Promoted"
    }
    version = listed["metadata"]["resourceVersion"]
    deadline = time.monotonic() + timeout
    while len(promoted) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{len(promoted)} of {count} DexModels Promoted in {timeout} s")
        stream = watch.Watch().stream(
            api.list_namespaced_custom_object, GROUP, VERSION, ns, "dexmodels",
            resource_version=version, timeout_seconds=max(1, int(min(left, 60))),
        )  # fmt: skip
        for event in stream:
            obj = event["object"]
            version = obj["metadata"]["resourceVersion"]
            if (obj.get("status") or {}).get("phase") == "Promoted":
                promoted.add(obj["metadata"]["name"])
            else:
                promoted.discard(obj["metadata"]["name"])
            if len(promoted) >= count:
                return


def run() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with (
        ControlPlane(ControlPlaneConfig(), find_assets()) as state,
        tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp,
    ):
        kubeconfig = state.kubeconfig
        kubectl = ["kubectl", f"--kubeconfig={kubeconfig}"]
        subprocess.run(
            [*kubectl, "apply", "--server-side", "-k", str(REPO / "manifests/crd")],
            check=True,
            capture_output=True,
        )
        subprocess.run(  # KServe's real CRDs (`make kserve`)
            [*kubectl, "apply", "--server-side", "-k", str(find_kserve().crd)],
            check=True,
            capture_output=True,
        )
        wait_established(
            kubeconfig, ["dexmodels.dex.dataenginex.io", "inferenceservices.serving.kserve.io"]
        )
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        api = client.CustomObjectsApi(api_client)
        core = client.CoreV1Api(api_client)
        for ns in ("latency", "scale", "floor"):
            core.create_namespace({"metadata": {"name": ns}})
        # Traefik accepts the DexModels' HTTPRoutes (Standard mode's weights count once the
        # Gateway has them; its CRDs exist before the operator starts watching), and the
        # stand-in reports the InferenceServices Ready (no node here).
        with Gateway(kubeconfig, Path(tmp) / "gateway"):
            # The floors write with the operator's own client: on the wire, their requests
            # cost what the operator's do (the kubernetes package's cost more).
            os.environ["KUBECONFIG"] = str(kubeconfig)
            writer = kubeapi.Client(timeout=30)
            with KServeStandIn(kubeconfig, ready_after=0.0):
                floor = _floor(api, writer, "floor", SCALE, report=False)
            _delete_namespace(core, "floor")
            core.create_namespace({"metadata": {"name": "floor"}})
            with KServeStandIn(kubeconfig, ready_after=0.0):
                reported = _floor(api, writer, "floor", SCALE, report=True)
            _delete_namespace(core, "floor")
            metrics, liveness = free_ports(2)
            op = OperatorProcess(
                kubeconfig,
                Path(tmp) / "operator.log",
                {
                    "DEX_RESYNC_SECONDS": "30",
                    "DEX_METRICS_PORT": str(metrics),
                    "DEX_LIVENESS_PORT": str(liveness),
                    "DEX_WORKER_LIMIT": "20",
                    "DEX_NAMESPACES": '["latency", "scale"]',
                },
            ).start()
            idle_rss = rss_mib(op.pid)  # the floor: the operator watching, with nothing to do
            try:
                with KServeStandIn(kubeconfig, ready_after=0.0):
                    rows.append(_latency(api, "latency", 100))
                    scaled = _scale(api, "scale", SCALE)
                    seconds = scaled["seconds"]
                    assert isinstance(seconds, float)
                    rows.append({**scaled, "floor_s": floor, "ratio": round(seconds / floor, 2)})
                    rows.append(
                        {
                            "bench": f"  floor with the operator's {SCALE * 4} status writes "
                            "and Events, no framework",
                            "seconds": reported,
                            "floor_s": floor,
                            "ratio": round(reported / floor, 2),
                        }
                    )
                    rows.append(
                        {
                            "bench": "  the operator over that floor",
                            "seconds": seconds,
                            "floor_s": reported,
                            "ratio": round(seconds / reported, 2),
                        }
                    )
                    memory = _memory(api, "scale", 1000, op.pid)
                    rss = memory["rss_mib"]
                    assert isinstance(rss, float)
                    rows.append(
                        {**memory, "floor_mib": idle_rss, "ratio": round(rss / idle_rss, 2)}
                    )
            finally:
                op.stop()
        api_client.close()
    return rows


def _latency(api: client.CustomObjectsApi, ns: str, count: int) -> dict[str, object]:
    created: dict[str, float] = {}
    ready = threading.Event()

    def watch_isvcs() -> None:
        stream = watch.Watch().stream(
            api.list_namespaced_custom_object,
            "serving.kserve.io",
            "v1beta1",
            ns,
            "inferenceservices",
            timeout_seconds=120,
        )
        ready.set()
        for event in stream:
            if event["type"] == "ADDED":
                # Standard mode: the version's InferenceService, labelled with its DexModel.
                owner = event["object"]["metadata"]["labels"][MODEL_LABEL]
                created.setdefault(owner, time.monotonic())
            if len(created) >= count:
                return

    thread = threading.Thread(target=watch_isvcs, daemon=True)
    thread.start()
    ready.wait(10)
    sent: dict[str, float] = {}
    latencies = []
    for i in range(count):
        name = f"lat-{i:03d}"
        api.create_namespaced_custom_object(GROUP, VERSION, ns, "dexmodels", _dexmodel(name))
        sent[name] = time.monotonic()
        eventually(
            partial(created.__contains__, name), timeout=30, interval=0.005, what=f"isvc {name}"
        )
        latencies.append(created[name] - sent[name])
    return {
        "bench": "apply -> ISVC created (100, sequential)",
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(percentile(latencies, 0.99), 3),
        "target": "p99 < 1 s",
    }


def _floor(
    api: client.CustomObjectsApi, writer: kubeapi.Client, ns: str, count: int, *, report: bool
) -> float:
    config_ = OperatorConfig()

    def dexmodel(name: str) -> str:
        return kubeapi.custom_path(GROUP, VERSION, ns, "dexmodels", name)

    latest: dict[str, dict[str, Any]] = {}  # each DexModel as its last write returned it

    def status(
        body: dict[str, Any], plan: Plan, ready: bool, message: str | None
    ) -> dict[str, Any]:
        # The status the operator writes for a first version, in its own model.
        now = datetime.now(UTC)
        st = DexModelStatus(
            phase="Promoted" if ready else "Pending",
            observed_generation=body["metadata"]["generation"],
            stable_version=plan.stable.version,
            stable_storage_uri=plan.stable.storage_uri,
            resolved_version=plan.stable.version,
            resolved_storage_uri=plan.stable.storage_uri,
            waiting_since=None if ready else now,
            message=message or "",
            inference_service=InferenceServiceStatus(
                name=f"{body['metadata']['name']}-v1", deployment_mode="Standard", ready=ready
            ),
        )
        set_condition(st, "Ready", ready, "InferenceServiceReady", "", now)
        return st.model_dump(by_alias=True, mode="json", exclude_none=True)

    def write(body: dict[str, Any], plan: Plan, ready: bool) -> None:
        meta = body["metadata"]
        message = f"version {plan.stable.version} serves 100%" if ready else None
        latest[meta["name"]] = writer.request(
            "PUT", dexmodel(meta["name"]) + "/status",
            body={"apiVersion": f"{GROUP}/{VERSION}", "kind": "DexModel",
                  "metadata": {"name": meta["name"], "namespace": ns,
                               "resourceVersion": meta["resourceVersion"]},
                  "status": status(body, plan, ready, message)},
        )  # fmt: skip
        reason = "Promoted" if ready else "Deploying"
        text = message or f"serving version {plan.stable.version}"
        event = events.render(body, "Normal", reason, text)
        writer.request("POST", f"/api/v1/namespaces/{ns}/events", body=event)

    parent = route.ParentRef.parse(config_.gateway)
    endpoints = isvc.Endpoints(
        tracking_uri=config_.mlflow_url,
        feast_registry_server=config_.feast_registry_server,
        feast_feature_server=config_.feast_feature_server,
    )

    def children(body: dict[str, Any]) -> None:
        meta = body["metadata"]
        spec = DexModelSpec.model_validate(body["spec"])
        owner = {"apiVersion": body["apiVersion"], "kind": "DexModel"}
        owner |= {"name": meta["name"], "uid": meta["uid"]}
        plan = Plan(Target(str(spec.model.storage_uri), "1"))
        desired = isvc.render(
            name=meta["name"], namespace=ns, owner=owner, spec=spec, plan=plan,
            mode="Standard", endpoints=endpoints,
        )  # fmt: skip
        for obj in desired:
            writer.request(
                "POST",
                kubeapi.custom_path(isvc.KSERVE_GROUP, isvc.KSERVE_VERSION, ns, isvc.ISVC_PLURAL),
                body=obj,
            )
        writer.request(
            "POST",
            kubeapi.custom_path(route.GATEWAY_GROUP, route.GATEWAY_VERSION, ns, route.ROUTE_PLURAL),
            body=route.render(
                name=meta["name"], namespace=ns, owner_ref=isvc.owner_reference(owner),
                spec=spec, plan=plan, backends=[o["metadata"]["name"] for o in desired],
                parent=parent, domain=config_.ingress_domain,
            ),
        )  # fmt: skip
        if report:
            write(body, plan, ready=False)
        arrived(made, meta["name"])

    def promoted(name: str) -> None:
        if report:
            body = latest[name]
            write(body, Plan(Target(str(body["status"]["stableStorageUri"]), "1")), ready=True)
            return
        writer.request(
            "PATCH",
            dexmodel(name) + "/status",
            body={"status": {"phase": "Promoted"}},
            content_type=kubeapi.MERGE_PATCH,
        )

    # Readiness from watches, the events the operator's informers hear: no LIST polling of
    # 500 InferenceServices, whose cost would be the floor's and not the operator's.
    lock = threading.Lock()
    made: set[str] = set()  # DexModels whose children (and first report) are written
    ready: set[str] = set()  # DexModels whose InferenceService is Ready
    accepted: set[str] = set()  # DexModels whose route the Gateway accepted
    done: set[str] = set()
    writes: list[Future[None]] = []
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=20)

    def arrived(kind: set[str], name: str) -> None:
        with lock:
            kind.add(name)
            if name in made and name in ready and name in accepted and name not in done:
                done.add(name)
                writes.append(pool.submit(promoted, name))

    def follow(group: str, version: str, plural: str) -> None:
        watcher = watch.Watch()
        stream = watcher.stream(
            api.list_namespaced_custom_object, group, version, ns, plural, timeout_seconds=600
        )
        for event in stream:
            obj = event["object"]
            if plural == isvc.ISVC_PLURAL:
                name = obj["metadata"]["labels"][MODEL_LABEL]
                conditions = (obj.get("status") or {}).get("conditions") or []
                news = any(
                    c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
                )
            else:
                name = obj["metadata"]["name"]
                news = route.applied(obj, parent)
            if news:
                arrived(ready if plural == isvc.ISVC_PLURAL else accepted, name)
            if stop.is_set():
                watcher.stop()

    pending: list[Future[None]] = []
    with pool:
        watchers = [
            threading.Thread(target=follow, args=kind, daemon=True)
            for kind in (
                (isvc.KSERVE_GROUP, isvc.KSERVE_VERSION, isvc.ISVC_PLURAL),
                (route.GATEWAY_GROUP, route.GATEWAY_VERSION, route.ROUTE_PLURAL),
            )
        ]
        for thread in watchers:  # a watch that connects late still lists what exists
            thread.start()
        start = time.monotonic()
        for i in range(count):
            body = api.create_namespaced_custom_object(
                GROUP, VERSION, ns, "dexmodels", _dexmodel(f"f-{i:04d}")
            )
            pending.append(pool.submit(children, body))
        for future in pending:
            future.result()
        eventually(lambda: len(done) >= count, timeout=600, interval=0.05, what="floor served")
        stop.set()
        with lock:
            submitted = list(writes)
        for future in submitted:
            future.result()
    return round(time.monotonic() - start, 1)


def _delete_namespace(core: client.CoreV1Api, ns: str) -> None:
    """The floor's objects go before the operator's run, which then starts from the same
    empty cluster the floor did (the Gateway would otherwise carry the floor's 500 routes
    in its configuration, and the garbage collector its objects in its graph)."""
    core.delete_namespace(ns)

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    eventually(gone, timeout=300, interval=0.5, what=f"namespace {ns} deleted")


def _scale(api: client.CustomObjectsApi, ns: str, count: int) -> dict[str, object]:
    start = time.monotonic()
    for i in range(count):
        api.create_namespaced_custom_object(
            GROUP, VERSION, ns, "dexmodels", _dexmodel(f"s-{i:04d}")
        )
    _wait_promoted(api, ns, count, timeout=600)
    return {
        "bench": f"reconcile {count} DexModels to Promoted",
        "seconds": round(time.monotonic() - start, 1),
        "target": "< 15 s",
    }


def _memory(api: client.CustomObjectsApi, ns: str, total: int, pid: int) -> dict[str, object]:
    existing = len(api.list_namespaced_custom_object(GROUP, VERSION, ns, "dexmodels")["items"])
    for i in range(existing, total):
        api.create_namespaced_custom_object(
            GROUP, VERSION, ns, "dexmodels", _dexmodel(f"s-{i:04d}")
        )
    _wait_promoted(api, ns, total, timeout=900)
    return {
        "bench": f"operator RSS with {total} DexModels",
        "rss_mib": rss_mib(pid),
        # The bar is in MB (10^6 bytes); rss_mib is in MiB, so say the bar in both.
        "target": f"< 120 MB ({120e6 / 2**20:.1f} MiB)",
    }


if __name__ == "__main__":
    for row in run():
        print(row)
