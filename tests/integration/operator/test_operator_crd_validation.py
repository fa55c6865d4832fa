"""The DexModel CRD rejects invalid objects at ``kubectl apply`` time, with messages naming
the field (OpenAPI schema + CEL rules evaluated by the real API server)."""

from __future__ import annotations

import copy
from hashlib import sha1
from pathlib import Path
from typing import Any

import pytest
import yaml
from opkit import apply, kubectl

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

VALID: dict[str, Any] = {
    "apiVersion": "dex.dataenginex.io/v1alpha1",
    "kind": "DexModel",
    "metadata": {"name": "valid"},
    "spec": {
        "model": {"name": "churn-classifier", "version": "3"},
        "rollout": {"analysis": [{"name": "errors", "metric": "errorRate", "threshold": 0.05}]},
    },
}


def variant(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    node = obj["spec"]
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return obj


DELETE = object()


def features_with_uri() -> dict[str, Any]:
    obj = variant("model", {"storageUri": "s3://b/m"})
    obj["spec"]["features"] = {"featureService": "churn_v1", "entityKey": "customer_id"}
    return obj


def predictor_reads_features_with_runtime() -> dict[str, Any]:
    obj = variant("serving", {"runtime": "kserve-sklearnserver"})
    obj["spec"]["features"] = {
        "featureService": "churn_v1",
        "entityKey": "customer_id",
        "component": "predictor",
    }
    return obj


INVALID = [
    ("features-with-uri", features_with_uri(), "spec.features needs a registry model"),
    (
        "features-in-a-runtime",
        predictor_reads_features_with_runtime(),
        "spec.features.component predictor needs the DEX predictor",
    ),
    (
        "features-component",
        variant("features", {"featureService": "f", "entityKey": "k", "component": "explainer"}),
        'spec.features.component: Unsupported value: "explainer"',
    ),
    ("no-source", variant("model.version", DELETE), "exactly one of spec.model.version"),
    ("two-sources", variant("model.alias", "champion"), "exactly one of spec.model.version"),
    ("uri-and-version", variant("model.storageUri", "s3://b/m"), "exactly one of"),
    ("version-without-name", variant("model.name", DELETE), "spec.model.name"),
    ("version-not-number", variant("model.version", "latest"), "spec.model.version"),
    ("bad-format", variant("model.format", "caffe"), "spec.model.format"),
    ("bad-uri", variant("model.storageUri", "no scheme"), "spec.model.storageUri"),
    (
        "steps-decreasing",
        variant("rollout.steps", [50, 10]),
        "spec.rollout.steps must be strictly increasing",
    ),
    (
        "steps-duplicate",
        variant("rollout.steps", [10, 10, 50]),
        "spec.rollout.steps must be strictly increasing",
    ),
    ("step-zero", variant("rollout.steps", [0, 50]), "spec.rollout.steps[0]"),
    ("step-over-100", variant("rollout.steps", [10, 150]), "spec.rollout.steps[1]"),
    ("interval-words", variant("rollout.interval", "5 minutes"), "spec.rollout.interval"),
    ("interval-zero", variant("rollout.interval", "0s"), "spec.rollout.interval must be >= 1s"),
    (
        "deadline-words",
        variant("rollout.progressDeadline", "ten minutes"),
        "spec.rollout.progressDeadline",
    ),
    (
        "deadline-zero",
        variant("rollout.progressDeadline", "0s"),
        "spec.rollout.progressDeadline must be >= 1s",
    ),
    ("failure-limit-zero", variant("rollout.failureLimit", 0), "spec.rollout.failureLimit"),
    (
        "error-rate-threshold",
        variant("rollout.analysis", [{"name": "e", "metric": "errorRate", "threshold": 1.5}]),
        "threshold must be within [0, 1]",
    ),
    (
        "latency-threshold",
        variant("rollout.analysis", [{"name": "l", "metric": "latency", "threshold": -1}]),
        "threshold must be > 0",
    ),
    (
        "custom-no-query",
        variant("rollout.analysis", [{"name": "c", "metric": "custom", "threshold": 1}]),
        "query is required",
    ),
    (
        "percentile",
        variant(
            "rollout.analysis",
            [{"name": "l", "metric": "latency", "threshold": 0.2, "percentile": 1.5}],
        ),
        "spec.rollout.analysis[0].percentile: Invalid value: 1.5",
    ),
    (
        "bad-provider",
        variant(
            "rollout.analysis",
            [{"name": "e", "metric": "errorRate", "threshold": 0.1, "provider": "datadog"}],
        ),
        'spec.rollout.analysis[0].provider: Unsupported value: "datadog"',
    ),
    (
        "replicas",
        variant("serving", {"minReplicas": 3, "maxReplicas": 1}),
        "spec.serving.maxReplicas must be >= spec.serving.minReplicas",
    ),
    ("bad-protocol", variant("serving", {"protocol": "grpc"}), "spec.serving.protocol"),
    (
        "bad-mode",
        variant("serving", {"deploymentMode": "ModelMesh"}),
        "spec.serving.deploymentMode",
    ),
]


@pytest.mark.parametrize(("case", "obj", "needle"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_dexmodel_rejected_naming_field(
    kubeconfig: Path, namespace: str, case: str, obj: dict[str, Any], needle: str
) -> None:
    # A name that cannot contain the needle: kubectl echoes the object's name in its errors.
    obj["metadata"] = {
        "name": f"bad-{sha1(case.encode()).hexdigest()[:10]}",
        "namespace": namespace,
    }
    result = apply(kubeconfig, obj)
    assert result.returncode != 0, f"{case} was accepted"
    assert needle in result.stderr, result.stderr


def test_valid_dexmodel_gets_server_side_defaults(kubeconfig: Path, namespace: str) -> None:
    obj = copy.deepcopy(VALID)
    obj["metadata"]["namespace"] = namespace
    result = apply(kubeconfig, obj)
    assert result.returncode == 0, result.stderr
    stored = yaml.safe_load(
        kubectl(kubeconfig, "get", "dm", "valid", "-n", namespace, "-o", "yaml").stdout
    )
    rollout = stored["spec"]["rollout"]
    assert rollout["steps"] == [10, 25, 50]
    assert rollout["interval"] == "1m"
    assert rollout["failureLimit"] == 2
    assert rollout["progressDeadline"] == "10m"
    assert rollout["analysis"][0]["provider"] == "prometheus"
    assert stored["spec"]["serving"]["protocol"] == "v2"
    # shortName, category and printer columns are what users see.
    table = kubectl(kubeconfig, "get", "dex", "-n", namespace).stdout
    assert table.split("\n")[0].split() == [
        "NAME",
        "PHASE",
        "STABLE",
        "CANARY",
        "WEIGHT",
        "READY",
        "AGE",
    ]
    explain = kubectl(kubeconfig, "explain", "dexmodel.spec.rollout.steps").stdout
    assert "strictly increasing" in explain


def test_invalid_dexpipeline_rejected(kubeconfig: Path, namespace: str) -> None:
    obj = {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexPipeline",
        "metadata": {"name": "both", "namespace": namespace},
        "spec": {"pipeline": {"name": "training", "package": "x.yaml"}, "schedule": "daily"},
    }
    result = apply(kubeconfig, obj)
    assert result.returncode != 0
    assert "spec.schedule" in result.stderr
    assert "exactly one of spec.pipeline.name or spec.pipeline.package" in result.stderr


def test_dexpipeline_env_needs_one_value_source_at_apply_time(
    kubeconfig: Path, namespace: str
) -> None:
    ref = {"name": "dex-data", "key": "k"}
    obj = {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexPipeline",
        "metadata": {"name": "env", "namespace": namespace},
        "spec": {
            "pipeline": {"name": "training"},
            "env": [
                {"name": "A", "value": "x", "valueFrom": {"secretKeyRef": ref}},
                {"name": "B", "valueFrom": {"secretKeyRef": ref, "configMapKeyRef": ref}},
                {"name": "1C", "value": "x"},
            ],
        },
    }
    result = apply(kubeconfig, obj)
    assert result.returncode != 0
    assert "spec.env[0]: Invalid value" in result.stderr, result.stderr
    assert "exactly one of value or valueFrom must be set" in result.stderr
    assert "spec.env[1].valueFrom" in result.stderr
    assert "exactly one of configMapKeyRef or secretKeyRef must be set" in result.stderr
    assert "spec.env[2].name" in result.stderr
    # Valid: a literal and a Secret key.
    obj["spec"]["env"] = [  # type: ignore[index]
        {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"},
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": ref}},
    ]
    accepted = apply(kubeconfig, obj)
    assert accepted.returncode == 0, accepted.stderr
