"""Serving pods that cannot get their image (``dex_operator.pods``): which waits count, the
condition and Event they map to, and the DexModel write (API calls stubbed). The whole path
on a real node is tests/e2e/cluster."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dex_operator import kube, pods
from dex_operator.kubeapi import ApiError

NS, ISVC = "prod", "churn"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
IMAGE = "localhost/dex/dex-serving:missing"


def pod(
    name: str = "churn-predictor-abc",
    reason: str | None = "ErrImageNeverPull",
    *,
    init: bool = False,
    phase: str = "Pending",
    deleting: bool = False,
) -> dict[str, Any]:
    state: dict[str, Any] = (
        {"waiting": {"reason": reason, "message": f'image "{IMAGE}" is not present'}}
        if reason
        else {"running": {"startedAt": "2025-01-01T00:00:00Z"}}
    )
    container = {"name": "kserve-container", "image": IMAGE, "state": state}
    meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": {pods.ISVC_LABEL: ISVC}}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    key = "initContainerStatuses" if init else "containerStatuses"
    return {"metadata": meta, "status": {"phase": phase, key: [container]}}


@pytest.mark.parametrize(
    ("kubelet_reason", "reason"),
    [
        ("ErrImageNeverPull", "ErrImageNeverPull"),
        ("ErrImagePull", "ImagePullFailed"),
        ("ImagePullBackOff", "ImagePullFailed"),
        ("InvalidImageName", "InvalidImageName"),
    ],
)
def test_image_waits_map_to_a_reason(kubelet_reason: str, reason: str) -> None:
    (failure,) = pods.pod_failures(pod(reason=kubelet_reason))
    assert failure.reason == reason
    assert failure.kubelet_reason == kubelet_reason
    assert (failure.image, failure.container) == (IMAGE, "kserve-container")


@pytest.mark.parametrize(
    "other", [pod(reason=None), pod(reason="ContainerCreating"), pod(reason="CrashLoopBackOff")]
)
def test_other_states_are_not_image_failures(other: dict[str, Any]) -> None:
    assert pods.pod_failures(other) == []


def test_init_containers_count_terminating_and_finished_pods_do_not() -> None:
    assert [f.container for f in pods.pod_failures(pod(init=True))] == ["kserve-container"]
    assert pods.pod_failures(pod(deleting=True)) == []
    assert pods.pod_failures(pod(phase="Failed")) == []


def test_first_failure_reported_with_image_pod_and_count() -> None:
    failures = pods.image_failures([pod("b-pod"), pod("a-pod"), pod("c-pod", reason=None)])
    assert [f.pod for f in failures] == ["a-pod", "b-pod"]
    report = pods.decide(failures, None, 3, NOW)
    assert report is not None
    cond = report.condition
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "ImagesAvailable",
        "False",
        "ErrImageNeverPull",
    )
    assert cond["message"].startswith(f"image {IMAGE} is not on the node")
    assert "pod a-pod, container kserve-container" in cond["message"]
    assert "1 more pod(s)" in cond["message"]
    assert cond["observedGeneration"] == 3
    assert (report.event_type, report.event_reason) == ("Warning", "ErrImageNeverPull")
    assert IMAGE in report.event_message
    assert "is not present" in report.event_message  # the kubelet's own words


def test_same_failure_again_writes_nothing_and_backoff_flapping_is_one_reason() -> None:
    first = pods.decide(pods.image_failures([pod(reason="ErrImagePull")]), None, 1, NOW)
    assert first is not None
    later = datetime(2025, 1, 2, tzinfo=UTC)
    again = pods.image_failures([pod(reason="ImagePullBackOff")])
    assert pods.decide(again, first.condition, 1, later) is None


def test_another_pod_of_the_same_image_updates_status_without_a_new_event() -> None:
    first = pods.decide(pods.image_failures([pod("p1")]), None, 1, NOW)
    assert first is not None
    later = datetime(2025, 1, 2, tzinfo=UTC)
    report = pods.decide(pods.image_failures([pod("p2")]), first.condition, 1, later)
    assert report is not None
    assert report.event_type is None
    assert "pod p2" in report.condition["message"]
    # Still False: the transition time stays.
    assert report.condition["lastTransitionTime"] == first.condition["lastTransitionTime"]


def test_recovery_flips_to_true_once_and_nothing_is_said_without_a_failure() -> None:
    assert pods.decide([], None, 1, NOW) is None
    failed = pods.decide(pods.image_failures([pod()]), None, 1, NOW)
    assert failed is not None
    recovered = pods.decide([], failed.condition, 1, NOW)
    assert recovered is not None
    assert recovered.condition["status"] == "True"
    assert (recovered.event_type, recovered.event_reason) == ("Normal", "ImagesAvailable")
    assert pods.decide([], recovered.condition, 1, NOW) is None


# ------------------------------------------------------------------------------ API side


def dexmodel(conditions: list[dict[str, Any]], rv: str = "7") -> dict[str, Any]:
    return {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexModel",
        "metadata": {
            "name": ISVC,
            "namespace": NS,
            "uid": "u",
            "generation": 2,
            "resourceVersion": rv,
        },
        "status": {"phase": "Pending", "conditions": conditions},
    }


READY = {"type": "Ready", "status": "False", "reason": "InferenceServiceNotReady"}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The ISVC (owned by the DexModel), its pods, the DexModel; patches and Events kept."""
    world: dict[str, Any] = {
        "pods": [pod()],
        "dexmodels": [dexmodel([READY])],
        "patches": [],
        "events": [],
        "conflicts": 0,
    }
    isvc = {
        "metadata": {"ownerReferences": [{"kind": "DexModel", "name": ISVC, "controller": True}]}
    }
    world["isvcs"] = {ISVC: isvc}
    monkeypatch.setattr(kube, "get_isvc", lambda namespace, name: isvc)
    monkeypatch.setattr(kube, "list_isvcs", lambda namespace, owner: world["isvcs"])

    def list_pods(namespace: str, names: list[str]) -> list[dict[str, Any]]:
        world["listed"] = names
        return [
            p
            for p in world["pods"]
            if p["metadata"].get("labels", {}).get(pods.ISVC_LABEL, ISVC) in names
        ]

    monkeypatch.setattr(pods, "list_pods", list_pods)

    def get_dexmodel(namespace: str, name: str) -> dict[str, Any]:
        return world["dexmodels"].pop(0) if len(world["dexmodels"]) > 1 else world["dexmodels"][0]

    def patch(obj: dict[str, Any], conditions: list[dict[str, Any]]) -> None:
        if world["conflicts"]:
            world["conflicts"] -= 1
            raise ApiError(status=409)
        world["patches"].append((obj["metadata"]["resourceVersion"], conditions))

    monkeypatch.setattr(kube, "get_dexmodel", get_dexmodel)
    monkeypatch.setattr(pods, "_patch_conditions", patch)
    monkeypatch.setattr(
        pods.events,
        "post",
        lambda obj, type, reason, message: world["events"].append((type, reason)),
    )
    pods._quiet.clear()
    return world


def test_sync_keeps_the_controllers_conditions_and_posts_one_warning(api: dict[str, Any]) -> None:
    assert pods.sync(NS, ISVC, NOW) is False  # a failure remains to be watched
    ((rv, conditions),) = api["patches"]
    assert rv == "7"
    assert conditions[0] == READY
    assert conditions[1]["type"] == "ImagesAvailable"
    assert api["events"] == [("Warning", "ErrImageNeverPull")]


def test_a_healthy_stable_does_not_clear_what_the_canarys_pods_report(
    api: dict[str, Any],
) -> None:
    """Standard mode: one InferenceService per version. A sync for the stable's pods reads
    the canary's too, so the DexModel's condition stays False while the canary's pod waits."""
    canary = f"{ISVC}-v2"
    api["isvcs"] = {ISVC: api["isvcs"][ISVC], canary: {"metadata": {}}}
    failing = pod()
    failing["metadata"]["labels"] = {pods.ISVC_LABEL: canary}
    api["pods"] = [pod(reason=None), failing]
    assert pods.sync(NS, ISVC, NOW) is False
    assert api["listed"] == sorted([ISVC, canary])
    ((_, conditions),) = api["patches"]
    assert conditions[1]["status"] == "False"
    assert api["events"] == [("Warning", "ErrImageNeverPull")]


def test_sync_reads_again_after_a_conflict(api: dict[str, Any]) -> None:
    api["conflicts"] = 1
    api["dexmodels"] = [dexmodel([READY], rv="7"), dexmodel([READY], rv="8")]
    pods.sync(NS, ISVC, NOW)
    assert [rv for rv, _ in api["patches"]] == ["8"]
    assert len(api["events"]) == 1


def test_healthy_pod_events_cost_no_api_call_once_quiet(
    api: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    api["pods"] = [pod(reason=None)]
    calls: list[str] = []
    real_sync = pods.sync

    def counting(namespace: str, name: str, now: datetime | None = None) -> bool:
        calls.append(name)
        return real_sync(namespace, name, now)

    monkeypatch.setattr(pods, "sync", counting)
    pods.on_pod_event(NS, ISVC, pod(reason=None), deleted=False)
    pods.on_pod_event(NS, ISVC, pod(reason=None), deleted=False)
    pods.on_pod_event(NS, ISVC, pod(reason=None), deleted=True)
    assert calls == [ISVC]
    assert api["patches"] == []
    # A failing pod always syncs.
    api["pods"] = [pod()]
    pods.on_pod_event(NS, ISVC, pod(), deleted=False)
    assert calls == [ISVC, ISVC]
    assert api["events"] == [("Warning", "ErrImageNeverPull")]


def test_an_isvc_no_dexmodel_owns_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "get_isvc", lambda namespace, name: {"metadata": {}})

    def fail(*_: Any) -> None:
        raise AssertionError("no pod listing for a foreign InferenceService")

    monkeypatch.setattr(pods, "list_pods", fail)
    assert pods.sync(NS, ISVC, NOW) is True
