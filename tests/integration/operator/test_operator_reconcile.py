"""The operator (a real ``python -m dex_operator`` process) against the real API server:
DexModel -> owned InferenceService -> Ready -> Promoted, and canary rollouts in both KServe
deployment modes. The KServe controller is stood in for by ``KServeStandIn``, which patches
InferenceService status through the API."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from opkit import (
    DriftEndpoint,
    apply,
    condition,
    dexmodel,
    events_for,
    final_history,
    get_json,
    isvc_name,
    kubectl,
    only_isvc,
    owned_isvcs,
    uri_version,
)

from dex_testing.devcluster import eventually
from dex_testing.kserve_standin import KServeStandIn
from dex_testing.operator_process import OperatorProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

V1, V2, V3 = "s3://models/churn/1", "s3://models/churn/2", "s3://models/churn/3"


@pytest.fixture(scope="module")
def operator(operator_factory: object, kserve: KServeStandIn) -> OperatorProcess:
    proc: OperatorProcess = operator_factory()  # type: ignore[operator]
    return proc


def phase(kubeconfig: Path, ns: str, name: str) -> str | None:
    return get_json(kubeconfig, "dm", name, "-n", ns).get("status", {}).get("phase")


def wait_phase(kubeconfig: Path, ns: str, name: str, want: str, timeout: float = 30) -> dict:
    eventually(
        lambda: phase(kubeconfig, ns, name) == want, timeout=timeout, what=f"{name} phase {want}"
    )
    return get_json(kubeconfig, "dm", name, "-n", ns)


def set_uri(kubeconfig: Path, ns: str, name: str, uri: str) -> None:
    kubectl(
        kubeconfig,
        "patch",
        "dm",
        name,
        "-n",
        ns,
        "--type=merge",
        "-p",
        f'{{"spec":{{"model":{{"storageUri":"{uri}"}}}}}}',
    )


def test_create_owned_isvc_ready_promoted(
    kubeconfig: Path, namespace: str, operator: OperatorProcess, kserve: KServeStandIn
) -> None:
    obj = dexmodel("churn", namespace, storage_uri=V1, mode="Standard")
    obj["spec"]["serving"].update(
        minReplicas=1, maxReplicas=3, logger={"url": "http://monitor.dex:8080"}
    )
    assert apply(kubeconfig, obj).returncode == 0
    dm = wait_phase(kubeconfig, namespace, "churn", "Promoted")
    isvc = get_json(kubeconfig, "isvc", isvc_name("churn", V1), "-n", namespace)
    (ref,) = isvc["metadata"]["ownerReferences"]
    assert ref["kind"] == "DexModel"
    assert ref["uid"] == dm["metadata"]["uid"]
    assert ref["controller"] is True
    pred = isvc["spec"]["predictor"]
    (container,) = pred["containers"]
    assert container["args"][:2] == ["predictor", f"--model={V1}"]
    assert (pred["minReplicas"], pred["maxReplicas"]) == (1, 3)
    assert pred["logger"]["url"] == "http://monitor.dex:8080"
    assert "transformer" not in isvc["spec"]  # no spec.features (see the registry test)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert dm["status"]["stableVersion"] == uri_version(V1)
    assert condition(dm, "Ready")["status"] == "True"
    assert dm["status"]["observedGeneration"] == dm["metadata"]["generation"]
    assert dm["status"]["inferenceService"]["url"] == f"http://churn-{namespace}.example.com"
    # Requests enter through the DexModel's route, accepted by the Gateway.
    route = get_json(kubeconfig, "httproute", "churn", "-n", namespace)
    assert route["metadata"]["ownerReferences"][0]["uid"] == dm["metadata"]["uid"]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {
            "group": "",
            "kind": "Service",
            "name": f"{isvc_name('churn', V1)}-predictor",
            "port": 80,
            "weight": 100,
        }
    ]


@pytest.mark.parametrize("mode", ["Standard", "Knative"])
def test_passing_canary_takes_every_step(
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
    mode: str,
) -> None:
    name = f"pass-{mode.lower()}"
    drift.set(name, uri_version(V2), 0.05)
    assert (
        apply(
            kubeconfig, dexmodel(name, namespace, storage_uri=V1, mode=mode, steps=[10, 40, 70])
        ).returncode
        == 0
    )
    wait_phase(kubeconfig, namespace, name, "Promoted")
    set_uri(kubeconfig, namespace, name, V2)
    dm = wait_phase(kubeconfig, namespace, name, "Progressing", 15)
    assert dm["status"]["canaryVersion"] == uri_version(V2)
    dm = wait_phase(kubeconfig, namespace, name, "Promoted", 40)
    assert dm["status"]["stableVersion"] == uri_version(V2)
    assert final_history(kserve, namespace, name) == [None, 0, 10, 40, 70, None]
    if mode == "Knative":
        isvc = get_json(kubeconfig, "isvc", name, "-n", namespace)
        assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    else:
        isvc = only_isvc(kubeconfig, namespace, name, isvc_name(name, V2))
    assert f"--model={V2}" in isvc["spec"]["predictor"]["containers"][0]["args"]
    reasons = [e["reason"] for e in events_for(kubeconfig, namespace, name)]
    assert reasons.count("StepStarted") == 3
    assert "Promoted" in reasons


def test_failing_canary_rolls_back(
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
) -> None:
    name = "fail"
    drift.set(name, uri_version(V3), 0.9)
    assert (
        apply(
            kubeconfig, dexmodel(name, namespace, storage_uri=V1, steps=[10, 50], failure_limit=2)
        ).returncode
        == 0
    )
    wait_phase(kubeconfig, namespace, name, "Promoted")
    set_uri(kubeconfig, namespace, name, V3)
    dm = wait_phase(kubeconfig, namespace, name, "RolledBack", 40)
    assert dm["status"]["stableVersion"] == uri_version(V1)
    assert "canaryVersion" not in dm["status"]
    degraded = condition(dm, "Degraded")
    assert degraded is not None
    assert degraded["status"] == "True"
    assert degraded["reason"] == "AnalysisFailed"
    assert final_history(kserve, namespace, name) == [None, 0, 10, None]
    isvc = only_isvc(kubeconfig, namespace, name, isvc_name(name, V1))  # stable keeps 100%
    assert f"--model={V1}" in isvc["spec"]["predictor"]["containers"][0]["args"]
    events = events_for(kubeconfig, namespace, name)
    rolled = [e for e in events if e["reason"] == "RolledBack"]
    assert rolled
    assert rolled[0]["type"] == "Warning"
    assert "drift (drift) = 0.9" in rolled[0]["message"]
    assert sum(e["reason"] == "AnalysisFailed" for e in events) == 2


def test_a_canary_that_never_becomes_ready_rolls_back_at_the_progress_deadline(
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
) -> None:
    name = "stuck"
    never = "s3://models/churn/never-loads"
    kserve.never_ready.add(never)
    drift.set(name, uri_version(never), 0.01)
    obj = dexmodel(name, namespace, storage_uri=V1, steps=[10, 50], progressDeadline="4s")
    assert apply(kubeconfig, obj).returncode == 0
    wait_phase(kubeconfig, namespace, name, "Promoted")
    set_uri(kubeconfig, namespace, name, never)
    dm = wait_phase(kubeconfig, namespace, name, "RolledBack", 40)
    message = (
        f"canary version {uri_version(never)} did not become Ready within 4s "
        f"(spec.rollout.progressDeadline); stable {uri_version(V1)} serves 100%"
    )
    degraded = condition(dm, "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        "ProgressDeadlineExceeded",
        message,
    )
    assert dm["status"]["stableVersion"] == uri_version(V1)
    # It never got traffic, and the stable predictor was never replaced.
    assert final_history(kserve, namespace, name) == [None, 0, None]
    isvc = only_isvc(kubeconfig, namespace, name, isvc_name(name, V1))
    assert f"--model={V1}" in isvc["spec"]["predictor"]["containers"][0]["args"]
    rolled = [e for e in events_for(kubeconfig, namespace, name) if e["reason"] == "RolledBack"]
    assert [(e["type"], e["message"]) for e in rolled] == [("Warning", message)]


def test_abort_annotation_rolls_back(
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    kserve: KServeStandIn,
    drift: DriftEndpoint,
) -> None:
    name = "manual"
    drift.set(name, uri_version(V2), 0.01)
    obj = dexmodel(name, namespace, storage_uri=V1, steps=[10, 50], paused=True)
    assert apply(kubeconfig, obj).returncode == 0
    wait_phase(kubeconfig, namespace, name, "Promoted")
    set_uri(kubeconfig, namespace, name, V2)
    wait_phase(kubeconfig, namespace, name, "Progressing")
    kubectl(
        kubeconfig,
        "annotate",
        "dm",
        name,
        "-n",
        namespace,
        "dex.dataenginex.io/rollout-action=abort",
    )
    dm = wait_phase(kubeconfig, namespace, name, "RolledBack")
    assert condition(dm, "Degraded")["reason"] == "ManualAbort"
    eventually(
        lambda: (
            "dex.dataenginex.io/rollout-action"
            not in (
                get_json(kubeconfig, "dm", name, "-n", namespace)["metadata"].get("annotations")
                or {}
            )
        ),
        timeout=10,
        what="action annotation consumed",
    )
    # paused held the canary at 0%: no step was ever taken.
    assert final_history(kserve, namespace, name) == [None, 0, None]


def test_deleting_dexmodel_garbage_collects_isvc(
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    assert apply(kubeconfig, dexmodel("gone", namespace, storage_uri=V1)).returncode == 0
    wait_phase(kubeconfig, namespace, "gone", "Promoted")
    assert owned_isvcs(kubeconfig, namespace, "gone") == [isvc_name("gone", V1)]
    kubectl(kubeconfig, "delete", "dm", "gone", "-n", namespace, "--timeout=30s")
    eventually(
        lambda: not owned_isvcs(kubeconfig, namespace, "gone"),
        timeout=30,
        what="isvc garbage-collected",
    )
    eventually(
        lambda: (
            kubectl(kubeconfig, "get", "httproute", "gone", "-n", namespace, check=False).returncode
            != 0
        ),
        timeout=30,
        what="route garbage-collected",
    )


def test_a_refused_isvc_create_is_degraded_with_a_warning_and_nothing_half_applied(
    kubeconfig: Path, crds: None, operator: OperatorProcess
) -> None:
    # An admission policy refusing every InferenceService in one namespace: the create is
    # refused (422). The DexModel says so (Degraded + one Warning quoting the refusal), no
    # route is written past it, and once the policy goes the next resync applies it all.
    # Its own namespace, so no other test is refused anything.
    ns = f"dex-op-refuse-{uuid.uuid4().hex[:6]}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": ns},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["serving.kserve.io"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE"],
                        "resources": ["inferenceservices"],
                    }
                ]
            },
            "validations": [{"expression": "false", "message": "no InferenceServices here"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": ns},
        "spec": {
            "policyName": ns,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}
            },
        },
    }
    probe = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "probe", "namespace": ns},
        "spec": {"predictor": {"containers": [{"name": "kserve-container", "image": "x"}]}},
    }
    kubectl(kubeconfig, "create", "namespace", ns)
    try:
        kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(policy))
        kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(binding))
        eventually(  # the API server loads policies asynchronously
            lambda: (
                "denied"
                in kubectl(
                    kubeconfig,
                    "create",
                    "--dry-run=server",
                    "-f",
                    "-",
                    stdin=json.dumps(probe),
                    check=False,
                ).stderr
            ),
            timeout=30,
            what="admission policy in force",
        )
        assert apply(kubeconfig, dexmodel("refused", ns, storage_uri=V1)).returncode == 0

        def degraded() -> dict[str, Any] | None:
            return condition(get_json(kubeconfig, "dm", "refused", "-n", ns), "Degraded")

        eventually(
            lambda: (degraded() or {}).get("status") == "True",
            timeout=15,
            what="Degraded after the refused create",
        )
        cond = degraded() or {}
        assert cond["reason"] == "InferenceServiceRejected"
        assert "no InferenceServices here" in cond["message"]
        warnings = [
            e
            for e in events_for(kubeconfig, ns, "refused")
            if e["reason"] == "InferenceServiceRejected"
        ]
        assert [(e["type"], e["message"]) for e in warnings] == [("Warning", cond["message"])]
        # Nothing past the refusal: no InferenceService, no route pointing at none.
        assert kubectl(kubeconfig, "get", "isvc", "-n", ns, "-o", "name").stdout.strip() == ""
        assert kubectl(kubeconfig, "get", "httproute", "-n", ns, "-o", "name").stdout.strip() == ""
        kubectl(kubeconfig, "delete", "validatingadmissionpolicybinding", ns)
        wait_phase(kubeconfig, ns, "refused", "Promoted")
        assert (degraded() or {}).get("status") == "False"
    finally:
        # Gone before the test ends: operators started later watch the whole cluster.
        kubectl(kubeconfig, "delete", "dm", "refused", "-n", ns, "--timeout=30s", check=False)
        for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
            kubectl(kubeconfig, "delete", kind, ns, check=False)
        kubectl(kubeconfig, "delete", "namespace", ns, "--wait=false", check=False)
