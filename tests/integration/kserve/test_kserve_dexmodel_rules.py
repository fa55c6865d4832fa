"""What the real KServe refuses of an InferenceService the operator would render, the DexModel
CRD refuses at apply time, naming the field: each case below renders the operator's
InferenceService from a spec that skips the CRD (pydantic only), shows KServe's validating
webhook denying it, then applies the same DexModel and shows the API server refusing it
with the CRD's own message. A rule missing from the CRD would let the DexModel in; a rule
KServe dropped would let the InferenceService in."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from dex_operator import isvc
from dex_operator.crd.models import DexModelSpec
from dex_operator.rollout import Plan, Target
from dex_testing import SOURCE_ROOT
from dex_testing.crds import wait_established
from dex_testing.kserve_manager import KServeManager

sys.path.insert(0, str(Path(__file__).parent))
from kservekit import VALIDATOR, Kubectl

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

ENDPOINTS = isvc.Endpoints(
    tracking_uri="http://mlflow.dex.svc:5000",
    feast_registry_server="dex-feast.dex-system:6570",
    feast_feature_server="http://dex-feast.dex-system:6566",
)
IMAGE = "localhost/dex/dex-serving:dev"

CASES = [
    pytest.param(
        "churn",
        {"deploymentMode": "Knative", "scaleMetric": "cpu"},
        "[cpu] is not a supported metric",
        "spec.serving.scaleMetric must be concurrency or rps in Knative mode",
        id="knative-scaleMetric-cpu",
    ),
    pytest.param(
        "1churn",
        {},
        "must start with alphabetical character",
        "metadata.name must start with a letter",
        id="name-starts-with-a-digit",
    ),
    pytest.param(
        "churn",
        {"minReplicas": 3, "maxReplicas": 2},
        "'MinReplicas' cannot be greater than MaxReplicas",
        "spec.serving.maxReplicas must be >= spec.serving.minReplicas",
        id="minReplicas-above-maxReplicas",
    ),
]


@pytest.fixture(scope="module")
def dexmodel_crd(kserve: KServeManager, kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "-k", str(SOURCE_ROOT / "manifests" / "crd"))
    wait_established(kubectl.kubeconfig, ["dexmodels.dex.dataenginex.io"])


def dexmodel(name: str, namespace: str, serving: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "churn-classifier", "version": "1"},
            "serving": {"image": IMAGE, "deploymentMode": "Standard", **serving},
        },
    }


@pytest.mark.parametrize(("name", "serving", "kserve_says", "crd_says"), CASES)
def test_what_kserve_refuses_the_dexmodel_crd_refuses_naming_the_field(
    dexmodel_crd: None,
    kubectl: Kubectl,
    namespace: str,
    name: str,
    serving: dict[str, Any],
    kserve_says: str,
    crd_says: str,
) -> None:
    obj = dexmodel(name, namespace, serving)
    spec = DexModelSpec.model_validate(obj["spec"])
    mode = spec.serving.deployment_mode or "Standard"
    owner = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": name,
        "uid": "00000000-0000-0000-0000-000000000001",
    }
    (rendered,) = isvc.render(
        name=name,
        namespace=namespace,
        owner=owner,
        spec=spec,
        plan=Plan(Target("s3://models/churn/1", "1")),
        mode=mode,
        endpoints=ENDPOINTS,
    )
    refused = kubectl.create(rendered, dry_run=True)
    assert refused.returncode != 0, "KServe accepted it"
    assert VALIDATOR in refused.stderr, refused.stderr
    assert kserve_says in refused.stderr, refused.stderr

    applied = kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(obj), check=False)
    assert applied.returncode != 0, "the DexModel CRD accepted it"
    assert crd_says in applied.stderr, applied.stderr
