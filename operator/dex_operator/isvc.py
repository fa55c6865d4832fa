"""The KServe side: render the InferenceServices for a traffic ``Plan`` and read their status
back into the engine's ``Observed``, in either deployment mode.

Knative mode: one InferenceService named as the DexModel; the predictor always describes the
*latest* revision and ``canaryTrafficPercent`` splits traffic between it and KServe's last
rolled-out revision (Knative routes to the transformer, which calls the predictor's route).

Standard mode (KServe's default): one InferenceService *per model version*,
``{name}-v{version}``, each with its own transformer (fetching that version's features) and
predictor, and an HTTPRoute (``route``) whose backend weights split traffic between them.
KServe's own Standard canary (``spec.canary[]``) is not used: it sends the canary share
straight to the canary predictor, around the transformer, and its Ingress ignores the weight.
A traffic step then changes only the route's weights, never an InferenceService, so no
stable pod restarts (KServe copies ISVC annotations onto pod templates).

Containers: unless ``spec.serving.runtime`` names a KServe ServingRuntime, the predictor and
the transformer run the DEX serving image (``serving/Dockerfile``), whose entrypoint is
``python -m dex_serving.run``; their args are that CLI's flags (a unit test parses them with
its own parser). The predictor loads the pinned registry version (``models:/name/<n>``) or the
storage URI; the transformer reads its feature contract from the same registry. With a
transformer, the monitor receives inference events from it (features included), so the
predictor gets no KServe logger as well: each inference is logged once. With
``spec.features.component: predictor`` there is no transformer: the predictor container runs
the same feature-reading server without a predictor host (it loads the model itself), so a
request makes one hop, and that container logs the events.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from dex_operator import MODEL_LABEL, route
from dex_operator.crd.models import DexModelSpec, InferenceServiceStatus, TrafficTarget
from dex_operator.rollout import Observed, Plan, Target

Mode = Literal["Knative", "Standard"]

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
SPEC_HASH_ANNOTATION = "dex.dataenginex.io/spec-hash"

# KServe renamed the modes in 0.16 and still accepts (and normalises) the old names.
_MODE_NAMES: dict[str, Mode] = {
    "Knative": "Knative",
    "Serverless": "Knative",
    "Standard": "Standard",
    "RawDeployment": "Standard",
}


def normalise_mode(value: str | None) -> Mode | None:
    return _MODE_NAMES.get(value or "")


def resolve_mode(
    spec: DexModelSpec, isvc: dict[str, Any] | None, cluster_default: str | None
) -> Mode:
    """KServe's own precedence (GetDeploymentMode): the mode the ISVC already resolved to in
    its status, then its annotation (ours comes from spec.serving.deploymentMode), then the
    inferenceservice-config ``deploy.defaultDeploymentMode``, then KServe's default,
    Standard."""
    if isvc is not None:
        for value in (
            isvc.get("status", {}).get("deploymentMode"),
            isvc.get("metadata", {}).get("annotations", {}).get(MODE_ANNOTATION),
        ):
            if mode := normalise_mode(value):
                return mode
    return spec.serving.deployment_mode or normalise_mode(cluster_default) or "Standard"


def cluster_default_mode(configmap_data: dict[str, str] | None) -> str | None:
    """``deploy`` key of the inferenceservice-config ConfigMap: ``{"defaultDeploymentMode": …}``."""
    if not configmap_data or "deploy" not in configmap_data:
        return None
    try:
        value = json.loads(configmap_data["deploy"]).get("defaultDeploymentMode")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None


def variant_name(target: Target) -> str:
    """Standard-mode variant name (a DNS label): v<version>, or a hash of the URI."""
    if target.version.isdigit():
        return f"v{target.version}"
    return "u" + hashlib.sha256(target.storage_uri.encode()).hexdigest()[:10]


# KServe routes a component's traffic to port 8080 of its kserve-container.
SERVING_PORT = 8080
CONTAINER_NAME = "kserve-container"
# Where serving/Dockerfile copies the Feast definitions (store locations come from env).
FEATURE_REPO = "/opt/dex/feature_repo"
# The transformer's inference-event spool: an emptyDir, so events outlive a monitor restart
# (they outlive the container too; the pod's own end loses them). The operator mounts the
# volume, so it owns the bound; the volume's limit leaves room for the batch being written,
# since kubelet evicts a pod whose emptyDir outgrows its sizeLimit.
EVENT_SPOOL_DIR = "/var/lib/dex/event-spool"
EVENT_SPOOL_BYTES = 256 * 2**20
EVENT_SPOOL_LIMIT = "320Mi"


@dataclass(frozen=True)
class Endpoints:
    """Platform services the serving containers talk to (from the operator's config)."""

    tracking_uri: str
    feast_registry_server: str
    feast_feature_server: str


def model_uri(spec: DexModelSpec, target: Target) -> str:
    """What the serving CLI's ``--model`` gets: the pinned registry version, or the URI."""
    if spec.model.name and target.version.isdigit():
        return f"models:/{spec.model.name}/{target.version}"
    return target.storage_uri


def predictor_args(
    spec: DexModelSpec, target: Target, served_name: str, endpoints: Endpoints
) -> list[str]:
    return [
        "predictor",
        f"--model={model_uri(spec, target)}",
        f"--served-name={served_name}",
        f"--tracking-uri={endpoints.tracking_uri}",
        "--host=0.0.0.0",
        f"--port={SERVING_PORT}",
    ]


def transformer_args(
    spec: DexModelSpec,
    target: Target,
    served_name: str,
    predictor_host: str | None,
    endpoints: Endpoints,
) -> list[str]:
    """``target``'s own transformer: its feature contract is that version's. KServe appends
    ``--model_name``, ``--predictor_host`` and ``--http_port`` to a custom transformer's args
    unless an arg starts with them, so ours use exactly those spellings: one value each.
    Without a predictor host it predicts itself (``features.component: predictor``)."""
    serving = spec.serving
    args = [
        "transformer",
        f"--model={model_uri(spec, target)}",
        f"--model_name={served_name}",
        f"--tracking-uri={endpoints.tracking_uri}",
        f"--feature-repo={FEATURE_REPO}",
        f"--feast-registry-server={endpoints.feast_registry_server}",
        f"--feast-feature-server={endpoints.feast_feature_server}",
    ]
    if predictor_host:
        args += [f"--predictor_host={predictor_host}", f"--predictor-protocol={serving.protocol}"]
    if serving.logger:
        args += [
            f"--monitor-url={serving.logger.url}",
            f"--event-spool={EVENT_SPOOL_DIR}",
            f"--event-spool-bytes={EVENT_SPOOL_BYTES}",
        ]
    return [*args, "--host=0.0.0.0", f"--http_port={SERVING_PORT}"]


def isvc_name(name: str, target: Target, mode: Mode) -> str:
    """Knative: the DexModel's name (KServe keeps the versions as revisions). Standard: one
    InferenceService per version, ``{name}-{variant}``."""
    return name if mode == "Knative" else f"{name}-{variant_name(target)}"


def predictor_host(isvc: str, namespace: str, mode: Mode) -> str:
    """The predictor as KServe itself points a transformer at it: Standard mode's Service
    ``{isvc}-predictor`` (port 80); Knative's route ``{isvc}-predictor`` (its default
    revision, the canary split happening at the predictor's route)."""
    return f"{isvc}-predictor.{namespace}"


def _with_event_spool(
    component: dict[str, Any], container: dict[str, Any], spec: DexModelSpec
) -> None:
    if spec.serving.logger:
        container["volumeMounts"] = [{"name": "event-spool", "mountPath": EVENT_SPOOL_DIR}]
        component["volumes"] = [
            {"name": "event-spool", "emptyDir": {"sizeLimit": EVENT_SPOOL_LIMIT}}
        ]


def _container(image: str, args: list[str], spec: DexModelSpec) -> dict[str, Any]:
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "args": args,
        # KServe reads a custom container's protocol from PROTOCOL.
        "env": [{"name": "PROTOCOL", "value": spec.serving.protocol}],
        "ports": [{"containerPort": SERVING_PORT, "protocol": "TCP"}],
    }


def _predictor(
    spec: DexModelSpec, target: Target, name: str, endpoints: Endpoints
) -> dict[str, Any]:
    serving = spec.serving
    resources = (
        serving.resources.model_dump(by_alias=True, exclude_none=True)
        if serving.resources
        else None
    )
    predictor: dict[str, Any] = {}
    if serving.runtime:
        model: dict[str, Any] = {
            "modelFormat": {"name": spec.model.format},
            "storageUri": target.storage_uri,
            "protocolVersion": serving.protocol,
            "runtime": serving.runtime,
        }
        if resources:
            model["resources"] = resources
        predictor["model"] = model
    else:
        reads = spec.feature_reader() == "predictor"
        args = (
            transformer_args(spec, target, name, None, endpoints)
            if reads
            else predictor_args(spec, target, name, endpoints)
        )
        container = _container(serving.image, args, spec)
        if resources:
            container["resources"] = resources
        predictor["containers"] = [container]
        if reads:
            _with_event_spool(predictor, container, spec)
    predictor["minReplicas"] = serving.min_replicas
    predictor["maxReplicas"] = serving.max_replicas
    if serving.scale_metric:
        predictor["scaleMetric"] = serving.scale_metric
    if serving.scale_target:
        predictor["scaleTarget"] = serving.scale_target
    if serving.logger and spec.features is None:
        predictor["logger"] = {"mode": serving.logger.mode, "url": serving.logger.url}
    return predictor


def _transformer(
    spec: DexModelSpec, target: Target, served_name: str, host: str, endpoints: Endpoints
) -> dict[str, Any] | None:
    if spec.features is None or spec.feature_reader() != "transformer":
        return None
    args = transformer_args(spec, target, served_name, host, endpoints)
    container = _container(spec.features.image, args, spec)
    if spec.serving.resources:
        container["resources"] = spec.serving.resources.model_dump(by_alias=True, exclude_none=True)
    # Ready only when its predictor answers (the transformer checks it; KServe's default
    # probe is a TCP connect, which a transformer passes before it can reach the predictor).
    container["readinessProbe"] = {
        "httpGet": {"path": "/v2/health/ready", "port": SERVING_PORT},
        "periodSeconds": 2,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    transformer: dict[str, Any] = {"containers": [container]}
    _with_event_spool(transformer, container, spec)
    return transformer


def render_spec(
    spec: DexModelSpec,
    plan: Plan,
    mode: Mode,
    name: str,
    namespace: str,
    endpoints: Endpoints,
    target: Target | None = None,
) -> dict[str, Any]:
    """Knative: the one InferenceService for ``plan`` (the canary share on its predictor).
    Standard: the InferenceService of ``target`` (one of the plan's versions), traffic-free:
    the route owns the split."""
    if mode == "Knative":
        live = plan.canary or plan.stable
        predictor = _predictor(spec, live, name, endpoints)
        if plan.canary is not None:
            predictor["canaryTrafficPercent"] = plan.weight
        own = name
        # The transformer follows stable during a Knative canary: its contract is the
        # canary's too (checked before the rollout starts).
        contract = plan.stable
    else:
        contract = target or plan.stable
        own = isvc_name(name, contract, mode)
        predictor = _predictor(spec, contract, name, endpoints)
    out: dict[str, Any] = {"predictor": predictor}
    transformer = _transformer(
        spec, contract, name, predictor_host(own, namespace, mode), endpoints
    )
    if transformer:
        out["transformer"] = transformer
    return out


def spec_hash(isvc_spec: dict[str, Any], mode: Mode) -> str:
    blob = json.dumps({"mode": mode, "spec": isvc_spec}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["name"],
        "uid": owner["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def render(
    *,
    name: str,
    namespace: str,
    owner: dict[str, Any],
    spec: DexModelSpec,
    plan: Plan,
    mode: Mode,
    endpoints: Endpoints,
) -> list[dict[str, Any]]:
    """Every InferenceService ``plan`` needs, owned by the DexModel (controller
    ownerReference): Knative one, Standard one per version (stable first)."""
    if mode == "Knative":
        targets: list[Target | None] = [None]
    else:
        targets = [plan.stable] if plan.canary is None else [plan.stable, plan.canary]
    out = []
    for target in targets:
        isvc_spec = render_spec(spec, plan, mode, name, namespace, endpoints, target)
        out.append(
            {
                "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}",
                "kind": "InferenceService",
                "metadata": {
                    "name": name if target is None else isvc_name(name, target, mode),
                    "namespace": namespace,
                    "labels": {MODEL_LABEL: name, "app.kubernetes.io/managed-by": "dex-operator"},
                    "annotations": {
                        MODE_ANNOTATION: mode,
                        SPEC_HASH_ANNOTATION: spec_hash(isvc_spec, mode),
                    },
                    "ownerReferences": [owner_reference(owner)],
                },
                "spec": isvc_spec,
            }
        )
    return out


def drifted(current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Whether ``current``'s spec departs from ``desired``'s in something we render (an
    out-of-band edit). Keys only ``current`` has (defaults KServe's webhook adds) are not
    drift: comparing whole specs would patch against the defaulter at every reconcile."""
    return current is not None and not _covers(current.get("spec") or {}, desired["spec"])


def _covers(have: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            key in have and _covers(have[key], value) for key, value in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(_covers(h, w) for h, w in zip(have, want, strict=True))
        )
    return bool(have == want)


# --------------------------------------------------------------------------- observation


def _ready(obj: dict[str, Any], kind: str = "Ready") -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True" for c in obj.get("conditions") or []
    )


def observe(
    isvc: dict[str, Any] | None, mode: Mode, plan: Plan | None
) -> tuple[Observed, InferenceServiceStatus | None]:
    """Knative mode: reduce the InferenceService to what the engine needs, plus a mirror for
    our status. ``plan`` is the traffic plan the current status implies (what we last asked
    for); the canary is identified through it, never guessed. (Standard mode: ``observe_variants``.)
    """
    if isvc is None:
        return Observed(), None
    meta, status = isvc.get("metadata", {}), isvc.get("status") or {}
    current = status.get("observedGeneration") == meta.get("generation")
    ready = _ready(status)
    mirror = InferenceServiceStatus(
        name=meta.get("name", ""), url=status.get("url"), deployment_mode=mode, ready=ready
    )
    return _observe_knative(status, current, ready, plan, mirror), mirror


def observe_variants(
    name: str,
    isvcs: dict[str, dict[str, Any]],
    route_obj: dict[str, Any] | None,
    plan: Plan | None,
    parent: route.ParentRef,
) -> tuple[Observed, InferenceServiceStatus | None]:
    """Standard mode: each version's InferenceService says whether it is Ready (KServe's
    Ready condition: its Deployments are available; not ``observedGeneration``, which KServe
    copies from a Deployment), the route says which weights the Gateway applied.

    The mirror's ``ready`` is whether the stable version serves at the mirror's ``url`` (the
    route's): its InferenceService Ready and the route accepted by the Gateway, as KServe's
    own Ready includes its ingress. So a version that comes up before the Gateway takes its
    route is reported once, serving, not once per half (a status write each)."""
    if plan is None:
        return Observed(), None
    stable = isvcs.get(isvc_name(name, plan.stable, "Standard"))
    canary = isvcs.get(isvc_name(name, plan.canary, "Standard")) if plan.canary else None
    applied = route.applied(route_obj, parent)
    stable_ready = stable is not None and _ready(stable.get("status") or {})
    mirror = InferenceServiceStatus(
        name=isvc_name(name, plan.stable, "Standard"),
        url=route_url(route_obj),
        deployment_mode="Standard",
        ready=stable_ready and route.accepted(route_obj, parent),
        stable_revision=isvc_name(name, plan.stable, "Standard"),
        canary_revision=isvc_name(name, plan.canary, "Standard") if plan.canary else None,
        traffic=route.traffic(route_obj) if applied else [],
    )
    canary_traffic = None
    if applied and plan.canary is not None:
        split = {t.revision: t.percent for t in route.traffic(route_obj)}
        canary_traffic = split.get(mirror.canary_revision or "")
    return (
        Observed(
            exists=stable is not None,
            current=applied,
            stable_ready=stable_ready,
            canary_ready=canary is not None and _ready(canary.get("status") or {}),
            canary_traffic=canary_traffic,
        ),
        mirror,
    )


def route_url(route_obj: dict[str, Any] | None) -> str | None:
    """Where the route serves: its first hostname."""
    hosts = ((route_obj or {}).get("spec") or {}).get("hostnames") or []
    return f"http://{hosts[0]}" if hosts else None


def _observe_knative(
    status: dict[str, Any],
    current: bool,
    ready: bool,
    plan: Plan | None,
    mirror: InferenceServiceStatus,
) -> Observed:
    pred = (status.get("components") or {}).get("predictor") or {}
    latest_ready = pred.get("latestReadyRevision")
    latest_created = pred.get("latestCreatedRevision")
    rolled_out = pred.get("latestRolledoutRevision")
    traffic = pred.get("traffic") or []
    mirror.traffic = [
        TrafficTarget(
            revision=t.get("revisionName", ""), percent=int(t.get("percent") or 0), tag=t.get("tag")
        )
        for t in traffic
    ]
    in_canary = plan is not None and plan.canary is not None
    # During a canary the newest revision is the canary and the last rolled-out one is
    # stable; KServe keeps latestRolledoutRevision on stable until canaryTrafficPercent goes.
    canary_rev = latest_created if in_canary and latest_created != rolled_out else None
    mirror.stable_revision, mirror.canary_revision = rolled_out, canary_rev
    canary_ready = bool(canary_rev) and latest_ready == canary_rev
    canary_traffic = None
    if canary_rev:
        canary_traffic = sum(
            int(t.get("percent") or 0) for t in traffic if t.get("revisionName") == canary_rev
        )
    return Observed(
        exists=True,
        current=current,
        stable_ready=ready,
        canary_ready=canary_ready,
        canary_traffic=canary_traffic,
    )


def plan_from_status(
    stable_uri: str | None,
    stable_version: str | None,
    canary_uri: str | None,
    canary_version: str | None,
    weight: int,
) -> Plan | None:
    """The plan a persisted status implies, used to interpret the ISVC before deciding."""
    if stable_uri is None:
        return None
    stable = Target(stable_uri, stable_version or "")
    if canary_uri is None:
        return Plan(stable)
    return Plan(stable, Target(canary_uri, canary_version or ""), weight)
