"""A stand-in for the KServe *controller*, for tests that have no node to run pods on.

Without a node no KServe pod can run, so the real manager would never report an
InferenceService Ready: ``KServeStandIn`` plays that part through the real API. It watches
InferenceServices and patches their ``status`` subresource as KServe reports readiness:
Knative mode with revisions and ``canaryTrafficPercent`` traffic, Standard mode per
InferenceService (the operator runs one per model version and splits with an HTTPRoute, whose
status a real Gateway reports: ``dex_testing.gateway``). Everything else (API server, CRDs,
validation, ownerReferences, RBAC, the operator, the Gateway) is real. Never imported by the
operator itself. Tests with a node use the real KServe manager (``dex_testing.kserve_manager``).

With ``workloads=True`` (a cluster with a node) it also makes each InferenceService's predictor
pods as KServe's Standard mode does: a Deployment ``<isvc>-predictor`` whose pods carry
``serving.kserve.io/inferenceservice=<isvc>`` and run the predictor container the
InferenceService names (image, args, env, ports), behind a Service ``<isvc>-predictor``
(port 80 -> 8080), both owned by the InferenceService, Ready when its pods are. Two additions
KServe would not make: ``imagePullPolicy: Never`` (the dev node has no registry, so an image
it lacks fails at once), and, when the container has none, a readiness probe on the served
model (``GET /v1/models/<served name>``) so Ready means loaded.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from dex_operator.isvc import ISVC_PLURAL, KSERVE_GROUP, KSERVE_VERSION, MODE_ANNOTATION
from dex_operator.route import GATEWAY_GROUP, GATEWAY_VERSION, ROUTE_PLURAL


@dataclass
class _Knative:
    revisions: list[tuple[str, str]] = field(default_factory=list)  # (name, config hash)
    ready_at: dict[str, float] = field(default_factory=dict)
    rolled_out: str | None = None
    previous: str | None = None


@dataclass
class _Standard:
    ready_at: dict[str, float] = field(default_factory=dict)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


class KServeStandIn:
    """Reports InferenceService status like KServe would; new revisions/variants become
    Ready ``ready_after`` seconds after they first appear."""

    def __init__(
        self, kubeconfig: Path, *, ready_after: float = 0.3, workloads: bool = False
    ) -> None:
        self.api_client = config.new_client_from_config(config_file=str(kubeconfig))
        self.api = client.CustomObjectsApi(self.api_client)
        self.ready_after = ready_after
        self.workloads = workloads
        self.apps = client.AppsV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        # Standard-mode InferenceServices whose predictor Deployment is not Ready yet: polled.
        self._pods_pending: set[tuple[str, str]] = set()
        self._polled_at = 0.0
        # Models that never load: a revision/variant whose spec mentions one of these strings
        # (a storage URI) never becomes Ready, as a predictor stuck pulling or crash-looping.
        self.never_ready: set[str] = set()
        self.weights: dict[tuple[str, str], list[int | None]] = {}
        self.creation_seen: dict[tuple[str, str], float] = {}
        self._knative: dict[tuple[str, str], _Knative] = {}
        self._standard: dict[tuple[str, str], _Standard] = {}
        self._dirty: set[tuple[str, str]] = set()
        # The newest object each watch event carried (None once deleted): KServe's informer
        # cache, so answering an event costs one status patch, not a GET as well.
        self._latest: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, daemon=True, name="kserve-watch"),
            threading.Thread(target=self._watch_routes, daemon=True, name="route-watch"),
            threading.Thread(target=self._work, daemon=True, name="kserve-work"),
        ]

    def __enter__(self) -> KServeStandIn:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5)
        self.api_client.close()

    def history(self, namespace: str, name: str) -> list[int | None]:
        """Canary weights asked for, in order (None = no canary), deduplicated: Knative's
        ``canaryTrafficPercent`` on the InferenceService, or in Standard mode the canary
        backend's weight on the DexModel's HTTPRoute (``RouteWatch``)."""
        with self._cond:
            return list(self.weights.get((namespace, name), []))

    def _record(self, key: tuple[str, str], weight: int | None) -> None:
        with self._cond:
            seen = self.weights.setdefault(key, [])
            if not seen or seen[-1] != weight:
                seen.append(weight)

    # ------------------------------------------------------------------ event plumbing

    def _watch(self) -> None:
        # Short server-side timeouts keep stop() prompt; each new watch continues from the
        # last resourceVersion instead of replaying every InferenceService as ADDED.
        version: str | None = None
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(
                    self.api.list_cluster_custom_object,
                    KSERVE_GROUP,
                    KSERVE_VERSION,
                    ISVC_PLURAL,
                    timeout_seconds=5,
                    resource_version=version,
                )
                for event in stream:
                    meta = event["object"]["metadata"]
                    version = meta.get("resourceVersion") or version
                    key = (meta["namespace"], meta["name"])
                    with self._cond:
                        deleted = event["type"] == "DELETED"
                        self._latest[key] = None if deleted else event["object"]
                        self.creation_seen.setdefault(key, time.monotonic())
                        self._dirty.add(key)
                        self._cond.notify()
                    if self._stop.is_set():
                        return
            except Exception:  # a dropped or expired (410) watch starts over from a listing
                version = None
                time.sleep(0.2)

    def _watch_routes(self) -> None:
        """Records each DexModel route's canary weight (the second backend's) as it changes;
        reports nothing: route status is the Gateway's (a real one, ``dex_testing.gateway``)."""
        version: str | None = None
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(
                    self.api.list_cluster_custom_object,
                    GATEWAY_GROUP,
                    GATEWAY_VERSION,
                    ROUTE_PLURAL,
                    timeout_seconds=5,
                    resource_version=version,
                )
                for event in stream:
                    obj = event["object"]
                    meta = obj["metadata"]
                    version = meta.get("resourceVersion") or version
                    if event["type"] != "DELETED":
                        refs = [
                            ref
                            for rule in (obj.get("spec") or {}).get("rules") or []
                            for ref in rule.get("backendRefs") or []
                        ]
                        weight = int(refs[1].get("weight", 1)) if len(refs) > 1 else None
                        self._record((meta["namespace"], meta["name"]), weight)
                    if self._stop.is_set():
                        return
            except Exception:  # no Gateway API CRDs yet, or a dropped/expired watch
                version = None
                self._stop.wait(0.5)

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait(timeout=0.1)
                keys, self._dirty = self._dirty, set()
            # Revisions becoming Ready are events too: revisit anything with a readiness
            # time in the future or just past.
            horizon = time.monotonic() - 1.0
            for key, ready_at in self._ready_maps():
                if any(t > horizon for t in ready_at.values()):
                    keys.add(key)
            if self._pods_pending and time.monotonic() - self._polled_at >= WORKLOAD_POLL_S:
                self._polled_at = time.monotonic()
                keys |= self._pods_pending
            for key in keys:
                try:
                    self._reconcile(*key)
                except ApiException:
                    with self._cond:
                        self._dirty.add(key)

    def _ready_maps(self) -> list[tuple[tuple[str, str], dict[str, float]]]:
        return [(k, v.ready_at) for k, v in list(self._knative.items())] + [
            (k, v.ready_at) for k, v in list(self._standard.items())
        ]

    # ------------------------------------------------------------------ KServe behaviour

    def _reconcile(self, namespace: str, name: str) -> None:
        with self._cond:
            obj = self._latest.get((namespace, name))
        if obj is None:
            self._knative.pop((namespace, name), None)
            self._standard.pop((namespace, name), None)
            with self._cond:
                self._pods_pending.discard((namespace, name))
            return
        annotations = obj["metadata"].get("annotations") or {}
        mode = annotations.get(MODE_ANNOTATION, "Standard")
        spec = obj.get("spec") or {}
        key = (namespace, name)
        if mode in ("Knative", "Serverless"):
            status, weight = self._knative_status(key, name, spec)
            self._record(key, weight)
        else:
            pods_ready = self._predictor_workload(obj) if self.workloads else None
            status = self._standard_status(key, spec, pods_ready)
        status.update(
            observedGeneration=obj["metadata"]["generation"],
            deploymentMode="Knative" if mode in ("Knative", "Serverless") else "Standard",
            url=f"http://{name}.{namespace}.example.com",
        )
        current = obj.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        try:
            self.api.patch_namespaced_custom_object_status(
                KSERVE_GROUP, KSERVE_VERSION, namespace, ISVC_PLURAL, name, {"status": status}
            )
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: its DELETED event follows
                raise

    def _ready_time(self, variant_spec: Any) -> float:
        text = json.dumps(variant_spec, sort_keys=True)
        if any(model in text for model in self.never_ready):
            return float("inf")
        return time.monotonic() + self.ready_after

    def _ready(self, ready_at: Mapping[str, float], rev: str | None) -> bool:
        return rev is not None and time.monotonic() >= ready_at.get(rev, float("inf"))

    @staticmethod
    def _conditions(ready: bool) -> list[dict[str, str]]:
        value = "True" if ready else "False"
        return [
            {"type": "PredictorReady", "status": value},
            {"type": "Ready", "status": value},
        ]

    def _knative_status(
        self, key: tuple[str, str], name: str, spec: dict[str, Any]
    ) -> tuple[dict[str, Any], int | None]:
        kn = self._knative.setdefault(key, _Knative())
        predictor = dict(spec.get("predictor") or {})
        canary_pct = predictor.pop("canaryTrafficPercent", None)
        config_hash = _hash({"predictor": predictor, "transformer": spec.get("transformer")})
        if not kn.revisions or kn.revisions[-1][1] != config_hash:
            rev = f"{name}-predictor-{len(kn.revisions) + 1:05d}"
            kn.revisions.append((rev, config_hash))
            kn.ready_at[rev] = self._ready_time(predictor)
        latest = kn.revisions[-1][0]
        latest_ready = next(
            (r for r, _ in reversed(kn.revisions) if self._ready(kn.ready_at, r)), None
        )
        in_canary = canary_pct is not None and kn.rolled_out not in (None, latest)
        if not in_canary and latest_ready == latest and kn.rolled_out != latest:
            # Full rollout of the latest revision once it is Ready (no canary percent).
            kn.previous, kn.rolled_out = kn.rolled_out, latest
        if in_canary:
            traffic = [
                {
                    "revisionName": kn.rolled_out,
                    "percent": 100 - int(canary_pct),
                    "tag": "prev",
                    "latestRevision": False,
                },
                {
                    "revisionName": latest,
                    "percent": int(canary_pct),
                    "tag": "latest",
                    "latestRevision": True,
                },
            ]
        else:
            traffic = [
                {
                    "revisionName": kn.rolled_out or latest,
                    "percent": 100,
                    "latestRevision": (kn.rolled_out or latest) == latest,
                }
            ]
        predictor_status = {
            "latestCreatedRevision": latest,
            "latestReadyRevision": latest_ready,
            "latestRolledoutRevision": kn.rolled_out,
            "previousRolledoutRevision": kn.previous,
            "traffic": traffic,
        }
        stable_ready = self._ready(kn.ready_at, kn.rolled_out)
        status = {
            "components": {
                "predictor": {k: v for k, v in predictor_status.items() if v is not None}
            },
            "conditions": self._conditions(stable_ready),
        }
        return status, (int(canary_pct) if in_canary else None)

    def _standard_status(
        self, key: tuple[str, str], spec: dict[str, Any], pods_ready: bool | None = None
    ) -> dict[str, Any]:
        """One version's InferenceService (the operator's Standard design: no spec.canary,
        the route splits): Ready once its predictor is (its pods, with workloads=True)."""
        sd = self._standard.setdefault(key, _Standard())
        if pods_ready is not None:
            sd.ready_at["predictor"] = time.monotonic() if pods_ready else float("inf")
        sd.ready_at.setdefault("predictor", self._ready_time(spec))
        return {"conditions": self._conditions(self._ready(sd.ready_at, "predictor"))}

    # ------------------------------------------------------------------ Standard-mode pods

    def _predictor_workload(self, obj: dict[str, Any]) -> bool:
        """Create or update the predictor's Deployment and Service; whether its pods are
        Ready (the Deployment rolled out and available)."""
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        deployment, service = predictor_workload(obj)
        workload = deployment["metadata"]["name"]
        current = _read(self.apps.read_namespaced_deployment, workload, namespace)
        if current is None:
            self.apps.create_namespaced_deployment(namespace, deployment)
        elif (current.metadata.annotations or {}).get(TEMPLATE_HASH) != _template_hash(deployment):
            # The predictor container changed: KServe rolls the Deployment's pods.
            patch = {
                "metadata": {"annotations": deployment["metadata"]["annotations"]},
                "spec": {"template": deployment["spec"]["template"]},
            }
            self.apps.patch_namespaced_deployment(workload, namespace, patch)
            current = None
        if _read(self.core.read_namespaced_service, workload, namespace) is None:
            self.core.create_namespaced_service(namespace, service)
        ready = current is not None and _rolled_out(current)
        with self._cond:
            if ready:
                self._pods_pending.discard((namespace, name))
            else:
                self._pods_pending.add((namespace, name))
        return ready


WORKLOAD_POLL_S = 0.5
ISVC_LABEL = "serving.kserve.io/inferenceservice"
TEMPLATE_HASH = "dex-testing/template-hash"


def _template_hash(deployment: dict[str, Any]) -> str:
    return _hash(deployment["spec"]["template"])


def predictor_workload(isvc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment and Service KServe's Standard mode makes for an InferenceService's
    (stable) predictor, from its first container."""
    meta = isvc["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    container = dict((predictor.get("containers") or [{}])[0])
    container.setdefault("imagePullPolicy", "Never")
    port = ((container.get("ports") or [{}])[0]).get("containerPort", 8080)
    served = next(
        (
            arg.split("=", 1)[1]
            for arg in container.get("args") or []
            if arg.startswith(("--served-name=", "--model_name="))
        ),
        name,
    )
    container.setdefault(
        "readinessProbe",
        {"httpGet": {"path": f"/v1/models/{served}", "port": port}, "periodSeconds": 1},
    )
    app = f"isvc.{name}-predictor"
    labels = {ISVC_LABEL: name, "component": "predictor", "app": app}
    owner = {
        "apiVersion": isvc["apiVersion"],
        "kind": isvc["kind"],
        "name": name,
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    workload_meta = {
        "name": f"{name}-predictor",
        "namespace": namespace,
        "labels": labels,
        "ownerReferences": [owner],
    }
    template = {"metadata": {"labels": labels}, "spec": {"containers": [container]}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**workload_meta, "annotations": {TEMPLATE_HASH: _hash(template)}},
        "spec": {
            "replicas": max(1, int(predictor.get("minReplicas") or 1)),
            "selector": {"matchLabels": {"app": app}},
            "template": template,
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": workload_meta,
        "spec": {
            "selector": {"app": app},
            "ports": [{"name": "http", "port": 80, "targetPort": port}],
        },
    }
    return deployment, service


def _read(read: Any, name: str, namespace: str) -> Any:
    try:
        return read(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _rolled_out(deployment: Any) -> bool:
    status = deployment.status
    wanted = deployment.spec.replicas or 1
    return bool(
        status is not None
        and (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
        and (status.updated_replicas or 0) >= wanted
        and (status.ready_replicas or 0) >= wanted
        and (status.replicas or 0) == wanted
    )
