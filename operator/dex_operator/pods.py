"""Serving pods that cannot get their image, reported on the DexModel that owns them.

KServe labels every pod it makes for an InferenceService ``serving.kserve.io/inferenceservice=
<name>``. A container of such a pod (an init container too: KServe's storage-initializer)
that waits with ``ErrImageNeverPull``, ``ErrImagePull``, ``ImagePullBackOff`` or
``InvalidImageName`` will not start by itself, yet the InferenceService only says "not
Ready", so the rollout would wait until ``spec.rollout.progressDeadline``. ``sync`` reads the
InferenceService's pods and, on the DexModel that controls the InferenceService, sets the
``ImagesAvailable`` condition: False with a reason (``ErrImageNeverPull``, ``ImagePullFailed``
for ``ErrImagePull``/``ImagePullBackOff``, which the kubelet alternates between, or
``InvalidImageName``) and a message naming the image, pod and container, plus a Warning Event
per newly failing image; True again, with a Normal Event, once no pod waits on an image.

The condition is this module's alone. The controller writes status back whole from what it
read, at that resourceVersion, and keeps the conditions it does not set; it owns ``Ready``,
which it recomputes from the InferenceService on every reconcile, so a pull failure reported
there would be overwritten within one resync. Writes here are conditional on the DexModel's
resourceVersion too and re-read on a conflict.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from dex_operator import events, kube
from dex_operator.crd.models import Condition
from dex_operator.events import EventType
from dex_operator.kubeapi import ApiError

ISVC_LABEL = "serving.kserve.io/inferenceservice"
CONDITION = "ImagesAvailable"
AVAILABLE_REASON = "ImagesAvailable"
# The kubelet's waiting reasons for an image it cannot get -> the condition's reason.
PULL_REASONS = {
    "ErrImageNeverPull": "ErrImageNeverPull",
    "ErrImagePull": "ImagePullFailed",
    "ImagePullBackOff": "ImagePullFailed",
    "InvalidImageName": "InvalidImageName",
}
_WHY = {
    "ErrImageNeverPull": "is not on the node and imagePullPolicy is Never",
    "ImagePullFailed": "cannot be pulled",
    "InvalidImageName": "is not a valid image reference",
}
ATTEMPTS = 3

log = logging.getLogger("dex_operator")


@dataclass(frozen=True)
class ImageFailure:
    """One container waiting on an image it cannot get."""

    pod: str
    container: str
    image: str
    reason: str  # the condition's reason (PULL_REASONS' values)
    kubelet_reason: str
    kubelet_message: str


def pod_failures(pod: Mapping[str, Any]) -> list[ImageFailure]:
    """The containers of ``pod`` (camelCase, as the API serves it) waiting on an image."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return []
    out = []
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            kubelet_reason = waiting.get("reason") or ""
            if kubelet_reason in PULL_REASONS:
                out.append(
                    ImageFailure(
                        pod=meta.get("name", ""),
                        container=container.get("name", ""),
                        image=container.get("image", ""),
                        reason=PULL_REASONS[kubelet_reason],
                        kubelet_reason=kubelet_reason,
                        kubelet_message=waiting.get("message") or "",
                    )
                )
    return out


def image_failures(pods: Iterable[Mapping[str, Any]]) -> list[ImageFailure]:
    """Every container of ``pods`` waiting on an image, ordered by pod and container."""
    found = [failure for pod in pods for failure in pod_failures(pod)]
    return sorted(found, key=lambda f: (f.pod, f.container))


def describe(failures: list[ImageFailure]) -> tuple[str, str]:
    """(reason, message) of the condition for ``failures`` (not empty): the first one named."""
    first = failures[0]
    # Not the kubelet's reason: it alternates ErrImagePull / ImagePullBackOff on every retry.
    message = (
        f"image {first.image} {_WHY[first.reason]}: pod {first.pod}, container {first.container}"
    )
    others = {f.pod for f in failures} - {first.pod}
    if others:
        message += f"; {len(others)} more pod(s) wait on an image"
    return first.reason, message


@dataclass(frozen=True)
class Report:
    """What ``sync`` writes: the new condition and, when it is news, an Event."""

    condition: dict[str, Any]
    event_type: EventType | None = None
    event_reason: str = ""
    event_message: str = ""


def decide(
    failures: list[ImageFailure],
    previous: Mapping[str, Any] | None,
    generation: int | None,
    now: datetime,
) -> Report | None:
    """The condition to write, or None when status already says it (or nothing is news:
    no failure and no earlier report of one)."""
    status: Literal["True", "False"]
    if failures:
        reason, message = describe(failures)
        status = "False"
    elif previous is not None and previous.get("status") == "False":
        reason, message = AVAILABLE_REASON, "no serving pod waits on an image"
        status = "True"
    else:
        return None
    if previous is not None and (previous.get("status"), previous.get("reason")) == (
        status,
        reason,
    ):
        if previous.get("message") == message:
            return None
        moved = previous.get("lastTransitionTime")
    else:
        moved = None
    condition = Condition(
        type=CONDITION,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=moved or now,
        observed_generation=generation,
    ).model_dump(by_alias=True, mode="json", exclude_none=True)
    if moved:
        condition["lastTransitionTime"] = moved  # kept exactly as it was
    if status == "True":
        return Report(condition, "Normal", AVAILABLE_REASON, message)
    old_images = _images(previous) if previous and previous.get("status") == "False" else set()
    if {f.image for f in failures} <= old_images:
        return Report(condition)  # the same image(s) still failing: status only
    first = failures[0]
    detail = f"{message} ({first.kubelet_reason}: {first.kubelet_message or 'no detail'})"
    return Report(condition, "Warning", reason, detail)


def _images(condition: Mapping[str, Any] | None) -> set[str]:
    """The image a condition message names (``image <ref> ...``)."""
    words = str((condition or {}).get("message") or "").split()
    return {words[1]} if len(words) > 1 and words[0] == "image" else set()


# ------------------------------------------------------------------------------ API side


def list_pods(namespace: str, isvc_names: list[str]) -> list[dict[str, Any]]:
    return kube.list_pods(namespace, f"{ISVC_LABEL} in ({','.join(isvc_names)})")


def owner_of(isvc_obj: Mapping[str, Any] | None) -> str | None:
    """The DexModel controlling an InferenceService, None if none does."""
    for ref in (isvc_obj or {}).get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "DexModel":
            return str(ref["name"])
    return None


# (namespace, InferenceService) whose last sync left nothing to watch for (no failing pod,
# status up to date): a healthy pod's event for them needs no API call. Set operations are
# atomic under the GIL.
_quiet: set[tuple[str, str]] = set()


def on_pod_event(namespace: str, isvc_name: str, pod: Mapping[str, Any], deleted: bool) -> None:
    """A pod of ``isvc_name`` changed: sync its DexModel unless nothing can have changed."""
    failing = not deleted and bool(pod_failures(pod))
    key = (namespace, isvc_name)
    if not failing and key in _quiet:
        return
    _quiet.discard(key)
    if sync(namespace, isvc_name):
        _quiet.add(key)


def sync(namespace: str, isvc_name: str, now: datetime | None = None) -> bool:
    """Report the image failures of the pods of the DexModel owning ``isvc_name`` (all its
    InferenceServices) on the DexModel. True when nothing is
    left to watch for: no pod waits on an image and status says so (or no DexModel owns
    the InferenceService)."""
    owner = owner_of(kube.get_isvc(namespace, isvc_name))
    if owner is None:
        return True
    # Every version's pods: the condition is the DexModel's, and a healthy stable must not
    # clear what a canary's pods still report (Standard mode has one InferenceService each).
    names = sorted({isvc_name, *kube.list_isvcs(namespace, owner)})
    failures = image_failures(list_pods(namespace, names))
    for attempt in range(ATTEMPTS):
        obj = kube.get_dexmodel(namespace, owner)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return True
        conditions = list((obj.get("status") or {}).get("conditions") or [])
        previous = next((c for c in conditions if c.get("type") == CONDITION), None)
        generation = obj["metadata"].get("generation")
        report = decide(failures, previous, generation, now or datetime.now(UTC))
        if report is None:
            return not failures
        others = [c for c in conditions if c.get("type") != CONDITION]
        try:
            _patch_conditions(obj, [*others, report.condition])
        except ApiError as exc:
            if exc.status == 409 and attempt < ATTEMPTS - 1:
                continue  # the controller wrote status meanwhile: read it again
            if exc.status in (404, 409):
                log.info("image report %s/%s: %s, retrying later", namespace, owner, exc.reason)
                return False
            raise
        if report.event_type:
            events.post(obj, report.event_type, report.event_reason, report.event_message)
            log.info("%s/%s %s: %s", namespace, owner, report.event_reason, report.event_message)
        return not failures
    return False


def _patch_conditions(obj: Mapping[str, Any], conditions: list[dict[str, Any]]) -> None:
    # A merge patch replaces the conditions list and leaves the rest of status as it is.
    kube.merge_status(dict(obj["metadata"]), {"conditions": conditions})
