"""The traffic split of a Standard-mode rollout: a Gateway API ``HTTPRoute`` per DexModel.

As Flagger and Argo Rollouts do, each version runs as its own workload (here its own
InferenceService: transformer + predictor, see ``isvc``) and the route's backend weights
send ``100 - w`` percent to stable's and ``w`` to the canary's entry Service: the
transformer when the DexModel has features (so every request, canary or not, is enriched by
the transformer of its own version), else the predictor. The route attaches to the platform's
Gateway (``DEX_GATEWAY``); its host is KServe's default domain template,
``{name}-{namespace}.{domain}``.

A weight counts as applied when the Gateway's controller reports the route ``Accepted`` at
the route's current generation (``status.parents[].conditions[].observedGeneration``): the
object that routes traffic says it took this spec. (Traefik writes that status when it has
built the new configuration, 0.24-0.34 s before it serves it, measured on the dev node: well
inside a step's hold, which is at least 1 s, so analysis never judges a weight not yet in
force.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dex_operator import MODEL_LABEL
from dex_operator.crd.models import DexModelSpec, TrafficTarget
from dex_operator.rollout import Plan

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
ROUTE_PLURAL = "httproutes"
# KServe's Standard-mode Services listen on 80 and forward to the container's 8080.
SERVICE_PORT = 80


@dataclass(frozen=True)
class ParentRef:
    """The Gateway routes attach to, ``namespace/name``."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> ParentRef:
        namespace, _, name = text.rpartition("/")
        if not namespace or not name:
            raise ValueError(f"gateway must be namespace/name, got {text!r}")
        return cls(namespace, name)


def entry_service(isvc_name: str, spec: DexModelSpec) -> str:
    """The Service requests enter an InferenceService through (KServe's Standard names)."""
    component = "transformer" if spec.feature_reader() == "transformer" else "predictor"
    return f"{isvc_name}-{component}"


def hostname(name: str, namespace: str, domain: str) -> str:
    return f"{name}-{namespace}.{domain}"


def render(
    *,
    name: str,
    namespace: str,
    owner_ref: dict[str, Any],
    spec: DexModelSpec,
    plan: Plan,
    backends: list[str],
    parent: ParentRef,
    domain: str,
) -> dict[str, Any]:
    """``backends``: the InferenceService names of ``plan``'s stable [and canary]."""
    weights = [100] if plan.canary is None else [100 - plan.weight, plan.weight]
    refs = [
        {"name": entry_service(backend, spec), "port": SERVICE_PORT, "weight": weight}
        for backend, weight in zip(backends, weights, strict=True)
    ]
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MODEL_LABEL: name, "app.kubernetes.io/managed-by": "dex-operator"},
            "ownerReferences": [owner_ref],
        },
        "spec": {
            "parentRefs": [
                {
                    "group": GATEWAY_GROUP,
                    "kind": "Gateway",
                    "namespace": parent.namespace,
                    "name": parent.name,
                }
            ],
            "hostnames": [hostname(name, namespace, domain)],
            "rules": [{"backendRefs": refs}],
        },
    }


def applied(route: dict[str, Any] | None, parent: ParentRef) -> bool:
    """Whether the Gateway's controller accepted the route's current spec."""
    generation = (route or {}).get("metadata", {}).get("generation")
    return generation is not None and generation in _accepted_at(route, parent)


def accepted(route: dict[str, Any] | None, parent: ParentRef) -> bool:
    """Whether the Gateway's controller accepted the route at all: at its current spec or an
    earlier one, which the Gateway serves until it takes the new one."""
    return bool(_accepted_at(route, parent))


def _accepted_at(route: dict[str, Any] | None, parent: ParentRef) -> list[Any]:
    """The generations ``parent``'s controller reports the route Accepted at (None where
    it names none)."""
    out: list[Any] = []
    for entry in ((route or {}).get("status") or {}).get("parents") or []:
        ref = entry.get("parentRef") or {}
        if ref.get("name") != parent.name or ref.get("namespace", "") not in (
            parent.namespace,
            "",
        ):
            continue
        out.extend(
            cond.get("observedGeneration")
            for cond in entry.get("conditions") or []
            if cond.get("type") == "Accepted" and cond.get("status") == "True"
        )
    return out


def weights(route: dict[str, Any] | None) -> dict[str, int]:
    """Backend Service -> weight, as the route's spec says."""
    out: dict[str, int] = {}
    for rule in ((route or {}).get("spec") or {}).get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            out[ref.get("name", "")] = out.get(ref.get("name", ""), 0) + int(ref.get("weight", 1))
    return out


def backend_isvc(service: str) -> str:
    """The InferenceService behind an entry Service (``entry_service``'s inverse)."""
    return service.rpartition("-")[0]


def traffic(route: dict[str, Any] | None) -> list[TrafficTarget]:
    """The split by InferenceService, in percent of the route's total weight."""
    split = weights(route)
    total = sum(split.values()) or 1
    return [
        TrafficTarget(revision=backend_isvc(service), percent=round(100 * weight / total))
        for service, weight in split.items()
    ]


def referenced(route: dict[str, Any] | None, isvc_name: str) -> bool:
    """Whether the route names this InferenceService's Service (even at weight 0)."""
    return any(backend_isvc(service) == isvc_name for service in weights(route))
