"""The KServe side: render the InferenceService for a traffic ``Plan`` and read its status
back into the engine's ``Observed``, in either deployment mode.

Knative mode: the predictor always describes the *latest* revision; ``canaryTrafficPercent``
splits traffic between it and KServe's last rolled-out revision. Status lives under
``status.components.predictor`` (latestReadyRevision, latestRolledoutRevision,
previousRolledoutRevision, traffic).

Standard mode (KServe's default; ``canaryTrafficPercent`` is ignored there): the predictor is
the stable variant and ``spec.canary[]`` holds the canary variant with ``trafficPercent``;
each variant is named (``predictor.name``) and reported in ``status.canaryStatuses``.

Containers: unless ``spec.serving.runtime`` names a KServe ServingRuntime, the predictor and
the transformer run the DEX serving image (``serving/Dockerfile``), whose entrypoint is
``python -m dex_serving.run``; their args are that CLI's flags (a unit test parses them with
its own parser). The predictor loads the pinned registry version (``models:/name/<n>``) or the
storage URI; the transformer reads its feature contract from the same registry. With a
transformer, the monitor receives inference events from it (features included), so the
predictor gets no KServe logger as well: each inference is logged once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from dex_operator.crd.models import DexModelSpec, InferenceServiceStatus, TrafficTarget
from dex_operator.rollout import Observed, Plan, Target

Mode = Literal["Knative", "Standard"]

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
SPEC_HASH_ANNOTATION = "dex.dataenginex.io/spec-hash"
MODEL_LABEL = "dex.dataenginex.io/dexmodel"

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
    spec: DexModelSpec, stable: Target, name: str, namespace: str, endpoints: Endpoints
) -> list[str]:
    """The transformer follows stable: the contract (feature service) is the same for the
    canary, which the operator checked before starting the rollout."""
    serving = spec.serving
    args = [
        "transformer",
        f"--model={model_uri(spec, stable)}",
        f"--served-name={name}",
        f"--tracking-uri={endpoints.tracking_uri}",
        f"--feature-repo={FEATURE_REPO}",
        # The predictor's Service, as KServe itself would point a transformer at it.
        f"--predictor-host={name}-predictor.{namespace}",
        f"--predictor-protocol={serving.protocol}",
    ]
    if serving.logger:
        args += [
            f"--monitor-url={serving.logger.url}",
            f"--event-spool={EVENT_SPOOL_DIR}",
            f"--event-spool-bytes={EVENT_SPOOL_BYTES}",
        ]
    return [*args, "--host=0.0.0.0", f"--port={SERVING_PORT}"]


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
        container = _container(serving.image, predictor_args(spec, target, name, endpoints), spec)
        if resources:
            container["resources"] = resources
        predictor["containers"] = [container]
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
    spec: DexModelSpec, stable: Target, name: str, namespace: str, endpoints: Endpoints
) -> dict[str, Any] | None:
    if spec.features is None:
        return None
    args = transformer_args(spec, stable, name, namespace, endpoints)
    container = _container(spec.features.image, args, spec)
    transformer: dict[str, Any] = {"containers": [container]}
    if spec.serving.logger:
        container["volumeMounts"] = [{"name": "event-spool", "mountPath": EVENT_SPOOL_DIR}]
        transformer["volumes"] = [
            {"name": "event-spool", "emptyDir": {"sizeLimit": EVENT_SPOOL_LIMIT}}
        ]
    return transformer


def render_spec(
    spec: DexModelSpec,
    plan: Plan,
    mode: Mode,
    name: str,
    namespace: str,
    endpoints: Endpoints,
) -> dict[str, Any]:
    if mode == "Knative":
        live = plan.canary or plan.stable
        predictor = _predictor(spec, live, name, endpoints)
        if plan.canary is not None:
            predictor["canaryTrafficPercent"] = plan.weight
        out: dict[str, Any] = {"predictor": predictor}
    else:
        predictor = {
            "name": variant_name(plan.stable),
            **_predictor(spec, plan.stable, name, endpoints),
        }
        out = {"predictor": predictor}
        if plan.canary is not None:
            canary = {
                "name": variant_name(plan.canary),
                **_predictor(spec, plan.canary, name, endpoints),
            }
            out["canary"] = [{"trafficPercent": plan.weight, "predictor": canary}]
    transformer = _transformer(spec, plan.stable, name, namespace, endpoints)
    if transformer:
        out["transformer"] = transformer
    return out


def spec_hash(isvc_spec: dict[str, Any], mode: Mode) -> str:
    blob = json.dumps({"mode": mode, "spec": isvc_spec}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def render(
    *,
    name: str,
    namespace: str,
    owner: dict[str, Any],
    spec: DexModelSpec,
    plan: Plan,
    mode: Mode,
    endpoints: Endpoints,
) -> dict[str, Any]:
    """The full InferenceService, owned by the DexModel (controller ownerReference)."""
    isvc_spec = render_spec(spec, plan, mode, name, namespace, endpoints)
    return {
        "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MODEL_LABEL: name, "app.kubernetes.io/managed-by": "dex-operator"},
            "annotations": {
                MODE_ANNOTATION: mode,
                SPEC_HASH_ANNOTATION: spec_hash(isvc_spec, mode),
            },
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["name"],
                    "uid": owner["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": isvc_spec,
    }


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
    """Reduce the InferenceService to what the engine needs, plus a mirror for our status.

    ``plan`` is the traffic plan the current status implies (what we last asked for); the
    canary is identified through it (its Standard variant name), never guessed.
    """
    if isvc is None:
        return Observed(), None
    meta, status = isvc.get("metadata", {}), isvc.get("status") or {}
    current = status.get("observedGeneration") == meta.get("generation")
    ready = _ready(status)
    mirror = InferenceServiceStatus(
        name=meta.get("name", ""), url=status.get("url"), deployment_mode=mode, ready=ready
    )
    if mode == "Knative":
        observed = _observe_knative(status, current, ready, plan, mirror)
    else:
        observed = _observe_standard(status, current, ready, plan, mirror)
    return observed, mirror


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


def _observe_standard(
    status: dict[str, Any],
    current: bool,
    ready: bool,
    plan: Plan | None,
    mirror: InferenceServiceStatus,
) -> Observed:
    canaries = status.get("canaryStatuses") or []
    mirror.stable_revision = variant_name(plan.stable) if plan else None
    canary_total = sum(int(c.get("trafficPercent") or 0) for c in canaries)
    mirror.traffic = [
        TrafficTarget(revision=mirror.stable_revision or "predictor", percent=100 - canary_total)
    ] + [
        TrafficTarget(revision=c.get("name", ""), percent=int(c.get("trafficPercent") or 0))
        for c in canaries
    ]
    canary_ready, canary_traffic = False, None
    if plan is not None and plan.canary is not None:
        wanted = variant_name(plan.canary)
        mirror.canary_revision = wanted
        for c in canaries:
            if c.get("name") == wanted:
                canary_ready = bool(c.get("ready"))
                canary_traffic = int(c.get("trafficPercent") or 0)
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
