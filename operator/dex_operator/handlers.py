"""kopf wiring: settings, and the triggers that call ``controller.reconcile``.

create/update/resume react at once; a change of the owned InferenceService (KServe reporting
readiness or traffic) wakes its DexModel; timers run only while time can change the outcome
(a hold expiring, readiness awaited, a registry retry, an alias to poll), so settled models
cost nothing at rest. Every trigger runs the same level-based reconcile (see ``controller``
for what it does and in which order it writes). KServe's serving pods are watched too: one
that cannot get its image is reported on its DexModel (``pods``).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from dex_operator import GROUP, MODEL_LABEL, VERSION, controller, isvc, kube, pods, route
from dex_operator.config import CONFIG
from dex_operator.source import RETRIED_REASONS

PLURAL = kube.PLURAL
FINALIZER = f"{GROUP}/operator"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Progress and diff-base live in status / our own annotation so the user's metadata
    # (what Argo CD compares) carries nothing of kopf's.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Bounded concurrency. Handlers are sync: the thread pool is what bounds the real work.
    # kopf's per-object queue workers are cheap asyncio tasks, but when all are taken the
    # whole watch stream waits for one to idle out, so that bound is set far above the
    # thread pool and idle workers leave after a second, not kopf's default five.
    settings.execution.max_workers = CONFIG.worker_limit
    settings.queueing.worker_limit = CONFIG.queue_worker_limit
    settings.queueing.idle_timeout = 1.0
    # Watches are re-established every ~5 min by the server, the client gives up a little
    # later, so a silently dead connection is noticed within minutes, not hours.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.posting.reporting_component = CONFIG.operator_name
    settings.posting.level = logging.INFO
    settings.posting.loggers = False  # only the explicit rollout Events, not every log line
    # No CRD/namespace scanning: the CRDs exist before the operator starts (kustomize order),
    # and the ClusterRole then needs no read access to CRDs or namespaces.
    settings.scanning.disabled = True
    kube.api_client()


# Phases in which nothing changes by itself: only an event (the spec, an annotation, the
# InferenceService) or an alias move can start work again.
SETTLED_PHASES = frozenset({"Promoted", "RolledBack", "Failed"})


def in_motion(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
    """Whether time alone can change this DexModel's outcome; only then does ``resync`` run."""
    if status.get("phase") not in SETTLED_PHASES or status.get("canaryStorageUri"):
        return True
    if status.get("observedGeneration") != meta.get("generation"):
        return True
    # An InferenceService not ours (NotOwned) may be deleted by its owner at any time: the
    # resync is what notices, its events do not reach us (it carries no DexModel label).
    waiting = RETRIED_REASONS | {controller.NOT_OWNED}
    return any(c.get("reason") in waiting for c in status.get("conditions") or [])


def follows_alias(spec: kopf.Spec, **_: Any) -> bool:
    return bool((spec.get("model") or {}).get("alias"))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def on_change(name: str, namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    assert namespace, "DexModel is namespaced"
    controller.reconcile(namespace, name, body=body, memo=memo)


@kopf.timer(
    GROUP, VERSION, PLURAL, interval=CONFIG.resync_seconds, initial_delay=0.5, when=in_motion
)
def resync(name: str, namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    assert namespace, "DexModel is namespaced"
    controller.reconcile(namespace, name, body=body, memo=memo)


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.registry_poll_seconds, when=follows_alias)
def poll_registry(
    name: str, namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    # source.resolve_target asks the registry once the last answer is registry_poll_seconds
    # old.
    assert namespace, "DexModel is namespaced"
    controller.reconcile(namespace, name, body=body, memo=memo)


@kopf.on.event(
    isvc.KSERVE_GROUP,
    isvc.KSERVE_VERSION,
    isvc.ISVC_PLURAL,
    labels={MODEL_LABEL: kopf.PRESENT},
)
def on_isvc_event(
    type: str | None, meta: kopf.Meta, status: kopf.Status, namespace: str | None, **_: Any
) -> None:
    # Like controller-runtime's Owns(): a change in the owned InferenceService (KServe
    # reporting a Ready revision or new traffic) wakes its DexModel now, not at next resync.
    # on.event keeps no state on the ISVC (on.field would annotate it). Our own create is
    # echoed back before KServe has said anything: nothing to react to yet. The memo kopf
    # passes here is the ISVC's, so none is handed on (controller.object_lock says why that
    # is safe).
    assert namespace, "InferenceService is namespaced"
    if type != "DELETED" and not status:
        return
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "DexModel":
            controller.reconcile(namespace, ref["name"])


@kopf.on.event(
    route.GATEWAY_GROUP,
    route.GATEWAY_VERSION,
    route.ROUTE_PLURAL,
    labels={MODEL_LABEL: kopf.PRESENT},
)
def on_route_event(
    type: str | None, meta: kopf.Meta, status: kopf.Status, namespace: str | None, **_: Any
) -> None:
    # The Gateway's controller accepting the route at its new generation is what says a
    # weight is applied: it wakes the DexModel as the InferenceServices' events do.
    assert namespace, "HTTPRoute is namespaced"
    if type != "DELETED" and not status:
        return
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "DexModel":
            controller.reconcile(namespace, ref["name"])


@kopf.on.event("v1", "pods", labels={pods.ISVC_LABEL: kopf.PRESENT})
def on_serving_pod_event(
    type: str | None,
    body: kopf.Body,
    labels: kopf.Labels,
    namespace: str | None,
    **_: Any,
) -> None:
    # KServe's pods of an InferenceService: a container that cannot get its image is
    # reported on the owning DexModel (pods.py), not left to the progress deadline. on.event
    # keeps no state on the pod: list and watch are all the ClusterRole grants on pods.
    assert namespace, "Pod is namespaced"
    pods.on_pod_event(namespace, labels[pods.ISVC_LABEL], body, deleted=type == "DELETED")


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def on_delete(name: str, namespace: str | None, **_: Any) -> None:
    # The lock needs no cleanup: kopf drops this object's memo, which held it.
    assert namespace, "DexModel is namespaced"
    controller.forget(namespace, name)
