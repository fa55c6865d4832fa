"""What the real KServe v0.20 controller does with InferenceServices in Standard mode, as DEX
relies on it: its webhooks default and refuse, its manager writes Deployments, Services and
HPAs with the names, ports, args and annotations asserted here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from dex_testing.devcluster import eventually
from dex_testing.kserve_manager import FINALIZER, ISVC_CRD, KServeManager

sys.path.insert(0, str(Path(__file__).parent))
from kservekit import VALIDATOR, Kubectl

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

IMAGE = "localhost/dex/dex-serving:dev"
KSERVE_CRDS = (
    "inferenceservices.serving.kserve.io",
    "servingruntimes.serving.kserve.io",
    "clusterservingruntimes.serving.kserve.io",
    "inferencegraphs.serving.kserve.io",
    "trainedmodels.serving.kserve.io",
    "clusterstoragecontainers.serving.kserve.io",
)
# KServe's defaulting gives a container without resources the ConfigMap's
# inferenceService.resource: 1 CPU and 2Gi, as request and limit.
DEFAULT_RESOURCES = {
    "requests": {"cpu": "1", "memory": "2Gi"},
    "limits": {"cpu": "1", "memory": "2Gi"},
}


def isvc(
    name: str,
    namespace: str,
    *,
    args: list[str] | None = None,
    transformer_args: list[str] | None = None,
    annotations: dict[str, str] | None = None,
    predictor_name: str | None = None,
) -> dict[str, Any]:
    predictor: dict[str, Any] = {
        "containers": [{"name": "kserve-container", "image": IMAGE, "args": args or []}]
    }
    if predictor_name:
        predictor["name"] = predictor_name
    spec: dict[str, Any] = {"predictor": predictor}
    if transformer_args is not None:
        spec["transformer"] = {
            "containers": [{"name": "kserve-container", "image": IMAGE, "args": transformer_args}]
        }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": spec,
    }


def _created(kubectl: Kubectl, obj: dict[str, Any]) -> dict[str, Any]:
    done = kubectl.create(obj)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def _wait(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return eventually(
        lambda: kubectl.get(kind, name, namespace),
        timeout=60,
        what=f"KServe's {kind} {namespace}/{name}",
    )


def test_real_crds_and_webhooks_installed(kserve: KServeManager, kubectl: Kubectl) -> None:
    for name in KSERVE_CRDS:
        crd = kubectl.json("get", "crd", name)
        established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
        assert established[0]["status"] == "True", name
    port = kserve.webhook_port
    mutating = kubectl.json(
        "get", "mutatingwebhookconfiguration", "inferenceservice.serving.kserve.io"
    )
    assert {h["name"]: h["clientConfig"]["url"] for h in mutating["webhooks"]} == {
        "inferenceservice.kserve-webhook-server.defaulter": (
            f"https://127.0.0.1:{port}/mutate-serving-kserve-io-v1beta1-inferenceservice"
        ),
        "inferenceservice.kserve-webhook-server.pod-mutator": f"https://127.0.0.1:{port}/mutate-pods",
    }
    validating = kubectl.json(
        "get", "validatingwebhookconfiguration", "inferenceservice.serving.kserve.io"
    )
    (hook,) = validating["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["clientConfig"]["url"].endswith(
        "/validate-serving-kserve-io-v1beta1-inferenceservice"
    )
    configmap = kubectl.json("get", "configmap", "inferenceservice-config", "-n", "kserve")
    assert '"defaultDeploymentMode": "Standard"' in configmap["data"]["deploy"]
    assert '"enableGatewayApi": false' in configmap["data"]["ingress"]  # upstream's


def test_custom_container_isvc_is_accepted_and_defaulted(
    kserve: KServeManager, kubectl: Kubectl, namespace: str
) -> None:
    args = ["--model_name", "churn", "--http_port", "8080"]
    created = _created(kubectl, isvc("defaulted", namespace, args=args))

    # The mutating webhook: the deployment mode as an annotation, resources from the
    # ConfigMap; the container's args are left as given.
    assert created["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard"}
    (container,) = created["spec"]["predictor"]["containers"]
    assert container["resources"] == DEFAULT_RESOURCES
    assert container["args"] == args
    assert container["image"] == IMAGE

    # The manager: its finalizer and the Standard deployment mode in status.
    reconciled = eventually(
        lambda: (
            (got := kubectl.get(ISVC_CRD, "defaulted", namespace))
            and got.get("status", {}).get("deploymentMode")
            and got
        ),
        timeout=60,
        what="KServe's status on the InferenceService",
    )
    assert reconciled["metadata"]["finalizers"] == [FINALIZER]
    assert reconciled["status"]["deploymentMode"] == "Standard"
    # No node, no pods: never Ready here.
    ready = [c for c in reconciled["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "False"


def _canary_max_replicas(namespace: str) -> dict[str, Any]:
    model = {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://models/churn/1"}
    canary_model = {**model, "storageUri": "s3://models/churn/2"}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "canary", "namespace": namespace},
        "spec": {
            "predictor": {"model": model},
            "canary": [
                {
                    "trafficPercent": 10,
                    "predictor": {"name": "c1", "maxReplicas": 3, "model": canary_model},
                }
            ],
        },
    }


def _knative_cpu_metric(namespace: str) -> dict[str, Any]:
    obj = isvc(
        "knative-cpu", namespace, annotations={"serving.kserve.io/deploymentMode": "Knative"}
    )
    obj["spec"]["predictor"]["scaleMetric"] = "cpu"
    return obj


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_canary_max_replicas, 'canary "c1" must not set maxReplicas (canary uses fixed replicas)'),
        (_knative_cpu_metric, "[cpu] is not a supported metric"),
    ],
    ids=["canary-maxReplicas", "knative-scaleMetric-cpu"],
)
def test_validating_webhook_refuses_what_the_schema_accepts(
    kserve: KServeManager, kubectl: Kubectl, namespace: str, make: Any, message: str
) -> None:
    # Validating admission runs after the (mutated) object passed the CRD's schema: a refusal
    # by KServe's validator means the schema itself accepted it.
    done = kubectl.create(make(namespace), dry_run=True)
    assert done.returncode != 0
    assert f"{VALIDATOR}: {message}" in done.stderr, done.stderr


def test_standard_mode_objects_names_ports_and_transformer_args(
    kserve: KServeManager, kubectl: Kubectl, namespace: str
) -> None:
    # "--model_name", "churn" as two tokens: KServe's IncludesArg finds "--model_name" and
    # appends only what is missing.
    transformer_args = ["-m", "dex_serving.transformer", "--model_name", "churn"]
    predictor_args = ["--model_name", "churn", "--http_port", "8080"]
    _created(
        kubectl, isvc("churn", namespace, args=predictor_args, transformer_args=transformer_args)
    )

    predictor = _wait(kubectl, "deployment", "churn-predictor", namespace)
    transformer = _wait(kubectl, "deployment", "churn-transformer", namespace)
    for deployment, component in ((predictor, "predictor"), (transformer, "transformer")):
        owner = deployment["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == (
            "InferenceService",
            "churn",
            True,
        )
        assert deployment["spec"]["template"]["metadata"]["labels"] == {
            "app": f"isvc.churn-{component}",
            "component": component,
            "serving.kserve.io/inferenceservice": "churn",
        }
        service = _wait(kubectl, "service", f"churn-{component}", namespace)
        assert service["spec"]["selector"] == {"app": f"isvc.churn-{component}"}
        assert service["spec"]["ports"] == [
            {"name": f"churn-{component}", "port": 80, "protocol": "TCP", "targetPort": 8080}
        ]
        hpa = _wait(kubectl, "hpa", f"churn-{component}", namespace)
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"churn-{component}"

    (predictor_container,) = predictor["spec"]["template"]["spec"]["containers"]
    assert predictor_container["args"] == predictor_args  # a predictor's args: untouched
    (transformer_container,) = transformer["spec"]["template"]["spec"]["containers"]
    assert transformer_container["args"] == [
        *transformer_args,
        "--predictor_host",
        f"churn-predictor.{namespace}",
        "--http_port",
        "8080",
    ]


def test_named_predictor_and_prefix_matched_args(
    kserve: KServeManager, kubectl: Kubectl, namespace: str
) -> None:
    # predictor.name becomes part of the predictor's names (not the transformer's), and
    # IncludesArg is a prefix match: "--model_name=churn" counts as --model_name, and so does
    # "--predictor_hostname" as --predictor_host.
    transformer_args = ["--model_name=churn", "--predictor_hostname", "x"]
    _created(
        kubectl,
        isvc("named", namespace, predictor_name="v3", transformer_args=transformer_args),
    )
    _wait(kubectl, "deployment", "named-v3-predictor", namespace)
    _wait(kubectl, "service", "named-v3-predictor", namespace)
    transformer = _wait(kubectl, "deployment", "named-transformer", namespace)
    _wait(kubectl, "service", "named-transformer", namespace)
    assert kubectl.get("deployment", "named-predictor", namespace) is None
    (container,) = transformer["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [*transformer_args, "--http_port", "8080"]

    # Without a --predictor_host of its own, the transformer is sent to the named predictor.
    _created(kubectl, isvc("named2", namespace, predictor_name="v3", transformer_args=[]))
    transformer = _wait(kubectl, "deployment", "named2-transformer", namespace)
    (container,) = transformer["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        "--model_name",
        "named2",
        "--predictor_host",
        f"named2-v3-predictor.{namespace}",
        "--http_port",
        "8080",
    ]


def test_isvc_annotations_are_copied_onto_every_pod_template(
    kserve: KServeManager, kubectl: Kubectl, namespace: str
) -> None:
    annotations = {"dex.dataenginex.io/step": "10"}
    _created(
        kubectl,
        isvc("annotated", namespace, transformer_args=[], annotations=annotations),
    )
    expected = {**annotations, "serving.kserve.io/deploymentMode": "Standard"}
    for component in ("predictor", "transformer"):
        deployment = _wait(kubectl, "deployment", f"annotated-{component}", namespace)
        assert deployment["spec"]["template"]["metadata"]["annotations"] == expected
        assert deployment["metadata"]["annotations"] == expected

    # Changing an annotation changes both pod templates: a rollout of each.
    kubectl(
        "annotate",
        ISVC_CRD,
        "annotated",
        "-n",
        namespace,
        "--overwrite",
        "dex.dataenginex.io/step=50",
    )
    for component in ("predictor", "transformer"):
        eventually(
            lambda component=component: (
                (kubectl.get("deployment", f"annotated-{component}", namespace) or {})
                .get("spec", {})
                .get("template", {})
                .get("metadata", {})
                .get("annotations", {})
                .get("dex.dataenginex.io/step")
                == "50"
            ),
            timeout=60,
            what=f"the new annotation on annotated-{component}'s pod template",
        )
