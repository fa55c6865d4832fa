"""InferenceService rendering and observation in both KServe deployment modes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dex_operator import isvc, route
from dex_operator.crd.models import DexModelSpec
from dex_operator.kube import merge_diff
from dex_operator.rollout import Plan, Target

V1 = Target("s3://m/1", "1")
V2 = Target("s3://m/2", "2")
OWNER = {
    "apiVersion": "dex.dataenginex.io/v1alpha1",
    "kind": "DexModel",
    "name": "churn",
    "uid": "u-1",
}


ENDPOINTS = isvc.Endpoints(
    tracking_uri="http://mlflow.dex.svc:5000",
    feast_registry_server="dex-feast.dex-system:6570",
    feast_feature_server="http://dex-feast.dex-system:6566",
)


def spec(**extra: Any) -> DexModelSpec:
    return DexModelSpec.model_validate(
        {"model": {"name": "churn-classifier", "version": "2"}, **extra}
    )


def render_spec(s: DexModelSpec, plan: Plan, mode: isvc.Mode) -> dict[str, Any]:
    return isvc.render_spec(s, plan, mode, "churn", "ns", ENDPOINTS)


def container(component: dict[str, Any]) -> dict[str, Any]:
    (only,) = component["containers"]
    assert only["name"] == "kserve-container"
    return dict(only)


def flag(args: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return value


def test_knative_canary_uses_canary_traffic_percent() -> None:
    out = render_spec(spec(), Plan(V1, V2, 25), "Knative")
    assert out["predictor"]["canaryTrafficPercent"] == 25
    assert flag(container(out["predictor"])["args"], "model") == "models:/churn-classifier/2"
    assert "canary" not in out


def test_knative_stable_only_has_no_canary_field() -> None:
    out = render_spec(spec(), Plan(V1), "Knative")
    assert "canaryTrafficPercent" not in out["predictor"]
    main = container(out["predictor"])
    assert main["image"] == "ghcr.io/dataenginex/dex-serving:0.1.0"
    assert main["args"] == [
        "predictor",
        "--model=models:/churn-classifier/1",
        "--served-name=churn",
        "--tracking-uri=http://mlflow.dex.svc:5000",
        "--host=0.0.0.0",
        "--port=8080",
    ]
    assert main["env"] == [{"name": "PROTOCOL", "value": "v2"}]
    assert main["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]


def test_storage_uri_source_is_served_as_is() -> None:
    s = DexModelSpec.model_validate({"model": {"storageUri": "s3://m/1"}})
    out = render_spec(s, Plan(Target("s3://m/1", "uri-1234abcd")), "Standard")
    assert flag(container(out["predictor"])["args"], "model") == "s3://m/1"


def test_named_runtime_uses_kserve_model_spec() -> None:
    s = spec(serving={"runtime": "kserve-sklearnserver", "resources": {"limits": {"cpu": "1"}}})
    out = render_spec(s, Plan(V1), "Knative")
    assert out["predictor"]["model"] == {
        "modelFormat": {"name": "sklearn"},
        "storageUri": "s3://m/1",
        "protocolVersion": "v2",
        "runtime": "kserve-sklearnserver",
        "resources": {"limits": {"cpu": "1"}},
    }
    assert "containers" not in out["predictor"]


def test_standard_renders_one_traffic_free_isvc_per_version() -> None:
    # KServe's own Standard canary would send the canary share around the transformer:
    # each version is a whole InferenceService and the route splits (test_operator_route).
    stable, canary = isvc.render(
        name="churn",
        namespace="ns",
        owner=OWNER,
        spec=spec(features={"featureService": "churn_v1", "entityKey": "customer_id"}),
        plan=Plan(V1, V2, 10),
        mode="Standard",
        endpoints=ENDPOINTS,
    )
    assert [stable["metadata"]["name"], canary["metadata"]["name"]] == ["churn-v1", "churn-v2"]
    for obj, version in ((stable, "1"), (canary, "2")):
        out = obj["spec"]
        assert set(out) == {"predictor", "transformer"}
        assert "name" not in out["predictor"]
        assert "canaryTrafficPercent" not in out["predictor"]
        model = f"models:/churn-classifier/{version}"
        assert flag(container(out["predictor"])["args"], "model") == model
        # Each version's transformer fetches the features of its own version's contract.
        args = container(out["transformer"])["args"]
        assert flag(args, "model") == model
        assert flag(args, "predictor_host") == f"churn-v{version}-predictor.ns"
        assert flag(args, "model_name") == "churn"  # served as the DexModel, whichever ISVC


def test_traffic_steps_leave_every_isvc_unchanged() -> None:
    # A step changes only the route's weights: KServe copies ISVC annotations (the spec
    # hash too) onto pod templates, so any change here would restart stable's pods.
    def objects(weight: int) -> list[dict[str, Any]]:
        return isvc.render(
            name="churn",
            namespace="ns",
            owner=OWNER,
            spec=spec(),
            plan=Plan(V1, V2, weight),
            mode="Standard",
            endpoints=ENDPOINTS,
        )

    assert objects(0) == objects(10) == objects(50)
    (alone,) = isvc.render(
        name="churn",
        namespace="ns",
        owner=OWNER,
        spec=spec(),
        plan=Plan(V1),
        mode="Standard",
        endpoints=ENDPOINTS,
    )
    assert alone == objects(10)[0]


def test_serving_features_and_logger_are_rendered() -> None:
    s = spec(
        features={"featureService": "churn_v1", "entityKey": "customer_id"},
        serving={
            "minReplicas": 2,
            "maxReplicas": 4,
            "scaleMetric": "rps",
            "scaleTarget": 50,
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
            "logger": {"url": "http://monitor:8080"},
            "protocol": "v1",
        },
    )
    out = render_spec(s, Plan(V1, V2, 10), "Standard")
    pred = out["predictor"]
    assert (pred["minReplicas"], pred["maxReplicas"]) == (2, 4)
    assert (pred["scaleMetric"], pred["scaleTarget"]) == ("rps", 50)
    assert container(pred)["resources"] == {
        "requests": {"cpu": "100m"},
        "limits": {"memory": "1Gi"},
    }
    # The transformer logs each inference (with its features); the predictor does not too.
    assert "logger" not in pred
    transformer = container(out["transformer"])
    assert transformer["args"] == [
        "transformer",
        "--model=models:/churn-classifier/1",
        "--model_name=churn",
        "--tracking-uri=http://mlflow.dex.svc:5000",
        "--feature-repo=/opt/dex/feature_repo",
        "--feast-registry-server=dex-feast.dex-system:6570",
        "--feast-feature-server=http://dex-feast.dex-system:6566",
        "--predictor_host=churn-v1-predictor.ns",
        "--predictor-protocol=v1",
        "--monitor-url=http://monitor:8080",
        "--event-spool=/var/lib/dex/event-spool",
        f"--event-spool-bytes={256 * 2**20}",
        "--host=0.0.0.0",
        "--http_port=8080",
    ]
    assert transformer["env"] == [{"name": "PROTOCOL", "value": "v1"}]
    assert transformer["resources"] == container(pred)["resources"]
    # A monitor restart must not lose events: they wait on a volume the pod keeps.
    assert transformer["volumeMounts"] == [
        {"name": "event-spool", "mountPath": "/var/lib/dex/event-spool"}
    ]
    assert out["transformer"]["volumes"] == [
        {"name": "event-spool", "emptyDir": {"sizeLimit": "320Mi"}}
    ]


@pytest.mark.parametrize("mode", ["Knative", "Standard"])
def test_a_predictor_that_reads_features_replaces_the_transformer(mode: isvc.Mode) -> None:
    s = spec(
        features={
            "featureService": "churn_v1",
            "entityKey": "customer_id",
            "component": "predictor",
        },
        serving={"logger": {"url": "http://monitor:8080"}, "protocol": "v2"},
    )
    out = render_spec(s, Plan(V1, V2, 10), mode)
    # One hop: no transformer; the predictor reads Feast and logs the events itself.
    assert set(out) == {"predictor"}
    pred = out["predictor"]
    assert "logger" not in pred
    args = container(pred)["args"]
    assert args[0] == "transformer"
    assert not [a for a in args if a.startswith(("--predictor_host", "--predictor-protocol"))]
    # Knative: the canary revision's predictor carries the canary's own contract.
    version = "2" if mode == "Knative" else "1"
    assert flag(args, "model") == f"models:/churn-classifier/{version}"
    assert flag(args, "feast-feature-server") == ENDPOINTS.feast_feature_server
    assert flag(args, "monitor-url") == "http://monitor:8080"
    assert container(pred)["volumeMounts"] == [
        {"name": "event-spool", "mountPath": "/var/lib/dex/event-spool"}
    ]
    assert pred["volumes"] == [{"name": "event-spool", "emptyDir": {"sizeLimit": "320Mi"}}]
    assert route.entry_service("churn-v1", s) == "churn-v1-predictor"


def test_logger_without_transformer_goes_on_the_predictor() -> None:
    out = render_spec(spec(serving={"logger": {"url": "http://monitor:8080"}}), Plan(V1), "Knative")
    assert out["predictor"]["logger"] == {"mode": "all", "url": "http://monitor:8080"}


def test_render_sets_controller_owner_and_hash() -> None:
    def render(plan: Plan) -> dict[str, Any]:
        return isvc.render(
            name="churn",
            namespace="ns",
            owner=OWNER,
            spec=spec(),
            plan=plan,
            mode="Knative",
            endpoints=ENDPOINTS,
        )[0]

    obj = render(Plan(V1))
    (ref,) = obj["metadata"]["ownerReferences"]
    assert ref["uid"] == "u-1"
    assert ref["controller"]
    assert ref["blockOwnerDeletion"]
    ann = obj["metadata"]["annotations"]
    assert ann[isvc.MODE_ANNOTATION] == "Knative"
    other = render(Plan(V1, V2, 10))
    assert (
        other["metadata"]["annotations"][isvc.SPEC_HASH_ANNOTATION]
        != ann[isvc.SPEC_HASH_ANNOTATION]
    )


@pytest.mark.parametrize(
    ("status_mode", "annotation", "cluster", "declared", "expected"),
    [
        ("Knative", "Standard", "Standard", None, "Knative"),
        (None, "RawDeployment", "Knative", None, "Standard"),
        (None, "Serverless", None, None, "Knative"),
        (None, None, "Serverless", None, "Knative"),
        (None, None, None, None, "Standard"),
        (None, None, "Knative", "Standard", "Standard"),
    ],
)
def test_mode_precedence(
    status_mode: str | None,
    annotation: str | None,
    cluster: str | None,
    declared: str | None,
    expected: str,
) -> None:
    obj: dict[str, Any] = {"metadata": {"annotations": {}}, "status": {}}
    if status_mode:
        obj["status"]["deploymentMode"] = status_mode
    if annotation:
        obj["metadata"]["annotations"][isvc.MODE_ANNOTATION] = annotation
    s = spec(serving={"deploymentMode": declared} if declared else {})
    assert isvc.resolve_mode(s, obj, cluster) == expected


def test_cluster_default_mode_from_configmap() -> None:
    assert (
        isvc.cluster_default_mode({"deploy": '{"defaultDeploymentMode": "Knative"}'}) == "Knative"
    )
    assert isvc.cluster_default_mode({"deploy": "not json"}) is None
    assert isvc.cluster_default_mode(None) is None


def _obj(status: dict[str, Any], generation: int = 3) -> dict[str, Any]:
    return {
        "metadata": {"name": "churn", "generation": generation},
        "status": {
            "observedGeneration": 3,
            "url": "http://churn",
            "conditions": [{"type": "Ready", "status": "True"}],
            **status,
        },
    }


def test_observe_knative_canary() -> None:
    status = {
        "components": {
            "predictor": {
                "latestCreatedRevision": "churn-predictor-00002",
                "latestReadyRevision": "churn-predictor-00002",
                "latestRolledoutRevision": "churn-predictor-00001",
                "traffic": [
                    {"revisionName": "churn-predictor-00001", "percent": 75, "tag": "prev"},
                    {
                        "revisionName": "churn-predictor-00002",
                        "percent": 25,
                        "tag": "latest",
                        "latestRevision": True,
                    },
                ],
            }
        }
    }
    observed, mirror = isvc.observe(_obj(status), "Knative", Plan(V1, V2, 25))
    assert observed.current
    assert observed.canary_ready
    assert observed.canary_traffic == 25
    assert mirror is not None
    assert mirror.canary_revision == "churn-predictor-00002"
    assert mirror.stable_revision == "churn-predictor-00001"
    assert [t.percent for t in mirror.traffic] == [75, 25]


def test_observe_knative_canary_not_ready_and_stale() -> None:
    status = {
        "components": {
            "predictor": {
                "latestCreatedRevision": "r-2",
                "latestReadyRevision": "r-1",
                "latestRolledoutRevision": "r-1",
                "traffic": [{"revisionName": "r-1", "percent": 100}],
            }
        }
    }
    observed, _ = isvc.observe(_obj(status, generation=4), "Knative", Plan(V1, V2, 0))
    assert not observed.current
    assert not observed.canary_ready
    assert observed.canary_traffic == 0


def _version(name: str, ready: bool) -> dict[str, Any]:
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {"metadata": {"name": name}, "status": {"conditions": [condition]}}


def _route(weights: list[tuple[str, int]], accepted_generation: int | None) -> dict[str, Any]:
    parents = []
    if accepted_generation is not None:
        condition = {
            "type": "Accepted",
            "status": "True",
            "observedGeneration": accepted_generation,
        }
        parents = [
            {
                "parentRef": {"name": "dex-gateway", "namespace": "dex-system"},
                "controllerName": "traefik.io/gateway-controller",
                "conditions": [condition],
            }
        ]
    refs = [{"name": f"{n}-predictor", "port": 80, "weight": w} for n, w in weights]
    return {
        "metadata": {"name": "churn", "generation": 3},
        "spec": {"hostnames": ["churn-ns.example.com"], "rules": [{"backendRefs": refs}]},
        "status": {"parents": parents},
    }


GATEWAY = route.ParentRef("dex-system", "dex-gateway")


def test_observe_variants_reads_readiness_per_version_and_weight_from_the_route() -> None:
    isvcs = {"churn-v1": _version("churn-v1", True), "churn-v2": _version("churn-v2", True)}
    accepted = _route([("churn-v1", 90), ("churn-v2", 10)], accepted_generation=3)
    observed, mirror = isvc.observe_variants("churn", isvcs, accepted, Plan(V1, V2, 10), GATEWAY)
    assert observed.current
    assert observed.stable_ready
    assert observed.canary_ready
    assert observed.canary_traffic == 10
    assert mirror is not None
    assert mirror.url == "http://churn-ns.example.com"
    assert [(t.revision, t.percent) for t in mirror.traffic] == [("churn-v1", 90), ("churn-v2", 10)]


def test_observe_variants_a_weight_is_not_applied_until_the_gateway_accepts_it() -> None:
    isvcs = {"churn-v1": _version("churn-v1", True), "churn-v2": _version("churn-v2", False)}
    # The Gateway last accepted generation 2; the route is at 3 (a weight patch pending).
    pending = _route([("churn-v1", 90), ("churn-v2", 10)], accepted_generation=2)
    observed, _ = isvc.observe_variants("churn", isvcs, pending, Plan(V1, V2, 10), GATEWAY)
    assert not observed.current
    assert observed.canary_traffic is None
    assert not observed.canary_ready
    other_gateway = isvc.observe_variants(
        "churn", isvcs, pending, Plan(V1, V2, 10), route.ParentRef("elsewhere", "gw")
    )[0]
    assert not other_gateway.current


@pytest.mark.parametrize(
    ("version_ready", "accepted_generation", "serves"),
    [
        (True, 3, True),
        (True, 2, True),  # the Gateway serves the route at an older spec meanwhile
        (True, None, False),  # up, but the Gateway has not taken the route: nothing serves
        (False, 3, False),
    ],
)
def test_observe_variants_mirror_is_ready_when_the_stable_version_serves_at_the_url(
    version_ready: bool, accepted_generation: int | None, serves: bool
) -> None:
    isvcs = {"churn-v1": _version("churn-v1", version_ready)}
    observed, mirror = isvc.observe_variants(
        "churn", isvcs, _route([("churn-v1", 100)], accepted_generation), Plan(V1), GATEWAY
    )
    assert mirror is not None
    assert mirror.ready is serves
    # The engine still reads the InferenceService and the route apart.
    assert observed.stable_ready is version_ready
    assert observed.current is (accepted_generation == 3)


def test_observe_missing() -> None:
    observed, mirror = isvc.observe(None, "Knative", None)
    assert not observed.exists
    assert mirror is None


def test_merge_diff_removes_and_replaces() -> None:
    old = {"predictor": {"name": "v1", "minReplicas": 1}, "canary": [{"trafficPercent": 10}]}
    new = {"predictor": {"name": "v2", "minReplicas": 1}}
    assert merge_diff(old, new) == {"predictor": {"name": "v2"}, "canary": None}
    assert merge_diff(new, new) == {}


def test_drifted_sees_edits_of_rendered_fields_not_added_defaults() -> None:
    desired = {"spec": render_spec(spec(), Plan(V1, V2, 10), "Knative")}
    assert not isvc.drifted(None, desired)
    assert not isvc.drifted(copy.deepcopy(desired), desired)
    # What an admission webhook adds (a key we do not render) is not an edit.
    defaulted = copy.deepcopy(desired)
    defaulted["spec"]["predictor"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    assert not isvc.drifted(defaulted, desired)
    # A kubectl edit of a value we render, or of a list's length, is.
    traffic = copy.deepcopy(desired)
    traffic["spec"]["predictor"]["canaryTrafficPercent"] = 90
    assert isvc.drifted(traffic, desired)
    args = copy.deepcopy(desired)
    args["spec"]["predictor"]["containers"][0]["args"].append("--extra")
    assert isvc.drifted(args, desired)
    removed = copy.deepcopy(desired)
    del removed["spec"]["predictor"]["canaryTrafficPercent"]
    assert isvc.drifted(removed, desired)
