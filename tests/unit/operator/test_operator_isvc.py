"""InferenceService rendering and observation in both KServe deployment modes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dex_operator import isvc
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


ENDPOINTS = isvc.Endpoints(tracking_uri="http://mlflow.dex.svc:5000")


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


def test_standard_canary_uses_named_variants() -> None:
    out = render_spec(spec(), Plan(V1, V2, 10), "Standard")
    assert out["predictor"]["name"] == "v1"
    assert flag(container(out["predictor"])["args"], "model") == "models:/churn-classifier/1"
    assert "canaryTrafficPercent" not in out["predictor"]
    (canary,) = out["canary"]
    assert canary["trafficPercent"] == 10
    assert canary["predictor"]["name"] == "v2"
    assert flag(container(canary["predictor"])["args"], "model") == "models:/churn-classifier/2"


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
        "--served-name=churn",
        "--tracking-uri=http://mlflow.dex.svc:5000",
        "--feature-repo=/opt/dex/feature_repo",
        "--predictor-host=churn-predictor.ns",
        "--predictor-protocol=v1",
        "--monitor-url=http://monitor:8080",
        "--event-spool=/var/lib/dex/event-spool",
        f"--event-spool-bytes={256 * 2**20}",
        "--host=0.0.0.0",
        "--port=8080",
    ]
    assert transformer["env"] == [{"name": "PROTOCOL", "value": "v1"}]
    # A monitor restart must not lose events: they wait on a volume the pod keeps.
    assert transformer["volumeMounts"] == [
        {"name": "event-spool", "mountPath": "/var/lib/dex/event-spool"}
    ]
    assert out["transformer"]["volumes"] == [
        {"name": "event-spool", "emptyDir": {"sizeLimit": "320Mi"}}
    ]


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
            mode="Standard",
            endpoints=ENDPOINTS,
        )

    obj = render(Plan(V1))
    (ref,) = obj["metadata"]["ownerReferences"]
    assert ref["uid"] == "u-1"
    assert ref["controller"]
    assert ref["blockOwnerDeletion"]
    ann = obj["metadata"]["annotations"]
    assert ann[isvc.MODE_ANNOTATION] == "Standard"
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


def test_observe_standard_canary() -> None:
    status = {"canaryStatuses": [{"name": "v2", "ready": True, "trafficPercent": 10}]}
    observed, mirror = isvc.observe(_obj(status), "Standard", Plan(V1, V2, 10))
    assert observed.canary_ready
    assert observed.canary_traffic == 10
    assert observed.stable_ready
    assert mirror is not None
    assert [(t.revision, t.percent) for t in mirror.traffic] == [
        ("v1", 90),
        ("v2", 10),
    ]


def test_observe_missing() -> None:
    observed, mirror = isvc.observe(None, "Standard", None)
    assert not observed.exists
    assert mirror is None


def test_merge_diff_removes_and_replaces() -> None:
    old = {"predictor": {"name": "v1", "minReplicas": 1}, "canary": [{"trafficPercent": 10}]}
    new = {"predictor": {"name": "v2", "minReplicas": 1}}
    assert merge_diff(old, new) == {"predictor": {"name": "v2"}, "canary": None}
    assert merge_diff(new, new) == {}


def test_drifted_sees_edits_of_rendered_fields_not_added_defaults() -> None:
    desired = {"spec": render_spec(spec(), Plan(V1, V2, 10), "Standard")}
    assert not isvc.drifted(None, desired)
    assert not isvc.drifted(copy.deepcopy(desired), desired)
    # What an admission webhook adds (a key we do not render) is not an edit.
    defaulted = copy.deepcopy(desired)
    defaulted["spec"]["predictor"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    assert not isvc.drifted(defaulted, desired)
    # A kubectl edit of a value we render, or of a list's length, is.
    traffic = copy.deepcopy(desired)
    traffic["spec"]["canary"][0]["trafficPercent"] = 90
    assert isvc.drifted(traffic, desired)
    args = copy.deepcopy(desired)
    args["spec"]["predictor"]["containers"][0]["args"].append("--extra")
    assert isvc.drifted(args, desired)
    removed = copy.deepcopy(desired)
    del removed["spec"]["canary"]
    assert isvc.drifted(removed, desired)
