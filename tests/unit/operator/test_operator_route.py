"""The Standard-mode traffic split: the HTTPRoute a plan renders, and when the Gateway has
applied it."""

from __future__ import annotations

from typing import Any

import pytest

from dex_operator import route
from dex_operator.crd.models import DexModelSpec
from dex_operator.rollout import Plan, Target

V1 = Target("s3://m/1", "1")
V2 = Target("s3://m/2", "2")
GATEWAY = route.ParentRef("dex-system", "dex-gateway")
OWNER_REF = {"apiVersion": "dex.dataenginex.io/v1alpha1", "kind": "DexModel", "name": "churn"}


def spec(features: bool) -> DexModelSpec:
    extra: dict[str, Any] = (
        {"features": {"featureService": "churn_v1", "entityKey": "customer_id"}} if features else {}
    )
    return DexModelSpec.model_validate({"model": {"name": "churn-classifier"}, **extra})


def render(plan: Plan, backends: list[str], features: bool = True) -> dict[str, Any]:
    return route.render(
        name="churn",
        namespace="ns",
        owner_ref=OWNER_REF,
        spec=spec(features),
        plan=plan,
        backends=backends,
        parent=GATEWAY,
        domain="example.com",
    )


def test_canary_weight_is_the_routes_backend_weight_through_each_transformer() -> None:
    obj = render(Plan(V1, V2, 25), ["churn-v1", "churn-v2"])
    assert obj["kind"] == "HTTPRoute"
    assert obj["metadata"]["ownerReferences"] == [OWNER_REF]
    (parent,) = obj["spec"]["parentRefs"]
    assert (parent["namespace"], parent["name"]) == ("dex-system", "dex-gateway")
    assert obj["spec"]["hostnames"] == ["churn-ns.example.com"]
    (rule,) = obj["spec"]["rules"]
    assert rule["backendRefs"] == [
        {"name": "churn-v1-transformer", "port": 80, "weight": 75},
        {"name": "churn-v2-transformer", "port": 80, "weight": 25},
    ]
    assert route.weights(obj) == {"churn-v1-transformer": 75, "churn-v2-transformer": 25}


def test_without_features_the_predictor_is_the_entry() -> None:
    obj = render(Plan(V1), ["churn-v1"], features=False)
    assert obj["spec"]["rules"][0]["backendRefs"] == [
        {"name": "churn-v1-predictor", "port": 80, "weight": 100}
    ]
    assert route.referenced(obj, "churn-v1")
    assert not route.referenced(obj, "churn-v2")
    assert not route.referenced(obj, "churn")


def status(generation: int, accepted: str = "True", name: str = "dex-gateway") -> dict[str, Any]:
    return {
        "parents": [
            {
                "parentRef": {"name": name, "namespace": "dex-system"},
                "conditions": [
                    {"type": "Accepted", "status": accepted, "observedGeneration": generation}
                ],
            }
        ]
    }


@pytest.mark.parametrize(
    ("route_status", "applied", "accepted"),
    [
        (status(4), True, True),
        # Accepted an older spec: this weight is not applied yet, the route still serves.
        (status(3), False, True),
        (status(4, accepted="False"), False, False),
        (status(4, name="other"), False, False),
        ({}, False, False),
    ],
)
def test_applied_needs_acceptance_of_the_current_generation_accepted_of_any(
    route_status: dict[str, Any], applied: bool, accepted: bool
) -> None:
    obj = render(Plan(V1, V2, 10), ["churn-v1", "churn-v2"])
    obj["metadata"]["generation"] = 4
    obj["status"] = route_status
    assert route.applied(obj, GATEWAY) is applied
    assert route.accepted(obj, GATEWAY) is accepted
    assert not route.applied(None, GATEWAY)
    assert not route.accepted(None, GATEWAY)


def test_accepted_without_an_observed_generation_is_accepted_not_applied() -> None:
    # observedGeneration is optional in a Gateway API condition.
    obj = render(Plan(V1), ["churn-v1"])
    obj["metadata"]["generation"] = 1
    obj["status"] = status(1)
    del obj["status"]["parents"][0]["conditions"][0]["observedGeneration"]
    assert route.accepted(obj, GATEWAY)
    assert not route.applied(obj, GATEWAY)


def test_parent_ref_parses_namespace_and_name() -> None:
    assert route.ParentRef.parse("dex-system/dex-gateway") == GATEWAY
    with pytest.raises(ValueError, match="namespace/name"):
        route.ParentRef.parse("dex-gateway")
