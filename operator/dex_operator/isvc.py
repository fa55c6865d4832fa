"""The KServe side: render the InferenceService for a traffic ``Plan`` and read its status
back into the engine's ``Observed``, in either deployment mode.

Knative mode: the predictor always describes the *latest* revision; ``canaryTrafficPercent``
splits traffic between it and KServe's last rolled-out revision. Status lives under
``status.components.predictor`` (latestReadyRevision, latestRolledoutRevision,
previousRolledoutRevision, traffic).

Standard mode (KServe's default; ``canaryTrafficPercent`` is ignored there): the predictor is
the stable variant and ``spec.canary[]`` holds the canary variant with ``trafficPercent``;
each variant is named (``predictor.name``) and reported in ``status.canaryStatuses``.
"""

from __future__ import annotations

import hashlib
import json
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


def _predictor(spec: DexModelSpec, target: Target) -> dict[str, Any]:
    serving = spec.serving
    model: dict[str, Any] = {
        "modelFormat": {"name": spec.model.format},
        "storageUri": target.storage_uri,
        "protocolVersion": serving.protocol,
    }
    if serving.runtime:
        model["runtime"] = serving.runtime
    if serving.resources:
        model["resources"] = serving.resources.model_dump(by_alias=True, exclude_none=True)
    predictor: dict[str, Any] = {
        "model": model,
        "minReplicas": serving.min_replicas,
        "maxReplicas": serving.max_replicas,
    }
    if serving.scale_metric:
        predictor["scaleMetric"] = serving.scale_metric
    if serving.scale_target:
        predictor["scaleTarget"] = serving.scale_target
    if serving.logger:
        predictor["logger"] = {"mode": serving.logger.mode, "url": serving.logger.url}
    return predictor


def _transformer(spec: DexModelSpec, model_name: str) -> dict[str, Any] | None:
    features = spec.features
    if features is None:
        return None
    return {
        "containers": [
            {
                "name": "kserve-container",
                "image": features.image,
                "args": [
                    f"--model_name={model_name}",
                    f"--feature_service={features.feature_service}",
                    f"--entity_key={features.entity_key}",
                    f"--protocol={spec.serving.protocol}",
                ],
            }
        ]
    }


def render_spec(spec: DexModelSpec, plan: Plan, mode: Mode, name: str) -> dict[str, Any]:
    if mode == "Knative":
        live = plan.canary or plan.stable
        predictor = _predictor(spec, live)
        if plan.canary is not None:
            predictor["canaryTrafficPercent"] = plan.weight
        out: dict[str, Any] = {"predictor": predictor}
    else:
        predictor = {"name": variant_name(plan.stable), **_predictor(spec, plan.stable)}
        out = {"predictor": predictor}
        if plan.canary is not None:
            canary = {"name": variant_name(plan.canary), **_predictor(spec, plan.canary)}
            out["canary"] = [{"trafficPercent": plan.weight, "predictor": canary}]
    transformer = _transformer(spec, name)
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
) -> dict[str, Any]:
    """The full InferenceService, owned by the DexModel (controller ownerReference)."""
    isvc_spec = render_spec(spec, plan, mode, name)
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
