"""kopf wiring: settings, and the triggers that call ``controller.reconcile``.

Any news of a DexModel (created, listed at startup, changed by anyone but our own status
writes) queues its reconcile at once, and so does a change of its InferenceServices (KServe
reporting readiness or traffic) or route (the Gateway accepting a weight). After
every reconcile the DexModel is requeued only while time can change the outcome (a hold
expiring, readiness awaited, a registry retry, an alias to poll; ``requeue`` says why that is
not a kopf timer), so settled models cost nothing at rest. Every trigger runs the same
level-based reconcile (see ``controller`` for what it does and in which order it writes).
KServe's serving pods are watched too: one that cannot get its image is reported on its
DexModel (``pods``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from dex import heap
from dex_operator import (
    FINALIZER,
    GROUP,
    MODEL_LABEL,
    VERSION,
    controller,
    informer,
    isvc,
    kube,
    kubeapi,
    pods,
    route,
)
from dex_operator.config import CONFIG
from dex_operator.requeue import Requeue
from dex_operator.source import RETRIED_REASONS

PLURAL = kube.PLURAL


class ChangeHandledOnly(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, built only for the kinds with change handlers (DexPipelines).

    kopf builds it from a deep copy of every event's object, of every kind it watches, to
    detect changes; only change handlers read it. The DexModels, InferenceServices, routes
    and pods are handled by event handlers, which never see it: at 500 DexModels that copy
    was a tenth of the event loop's time.
    """

    KINDS = frozenset({"DexPipeline"})

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        if body.get("kind") not in self.KINDS:
            return {}
        return super().build(body=body, extra_fields=extra_fields)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Progress and diff-base live in status / our own annotation so the user's metadata
    # (what Argo CD compares) carries nothing of kopf's.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = ChangeHandledOnly(
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
    settings.networking.request_timeout = CONFIG.api_timeout
    settings.posting.reporting_component = CONFIG.operator_name
    settings.posting.level = logging.INFO
    settings.posting.loggers = False  # only the explicit rollout Events, not every log line
    # No CRD/namespace scanning: the CRDs exist before the operator starts (kustomize order),
    # and the ClusterRole then needs no read access to CRDs or namespaces.
    settings.scanning.disabled = True
    kubeapi.client()  # logs in now: bad credentials stop the operator at startup
    REQUEUE.start(asyncio.get_running_loop(), settings.execution.executor)
    heap.freeze()  # imports and clients are in: full collections walk only the objects


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    # kopf's watches authenticate as the operator's own requests do (kubeapi.login).
    return kubeapi.login()


# Phases in which nothing changes by itself: only an event (the spec, an annotation, the
# InferenceService) or an alias move can start work again.
SETTLED_PHASES = frozenset({"Promoted", "RolledBack", "Failed"})


def in_motion(spec: Mapping[str, Any], status: Mapping[str, Any], meta: Mapping[str, Any]) -> bool:
    """Whether time alone can change this DexModel's outcome; only then is it requeued."""
    if status.get("phase") not in SETTLED_PHASES or status.get("canaryStorageUri"):
        return True
    if status.get("observedGeneration") != meta.get("generation"):
        return True
    # An InferenceService not ours (NotOwned) may be deleted by its owner at any time: the
    # requeue is what notices, its events do not reach us (it carries no DexModel label).
    waiting = RETRIED_REASONS | {controller.NOT_OWNED}
    return any(c.get("reason") in waiting for c in status.get("conditions") or [])


def requeue_after(obj: Mapping[str, Any] | None) -> float | None:
    """When this DexModel is to be reconciled again with no event; None: only on events."""
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if in_motion(spec, status, obj["metadata"]):
        return CONFIG.resync_seconds
    if (spec.get("model") or {}).get("alias"):
        # source.resolve_target asks the registry once its last answer is this old.
        return CONFIG.registry_poll_seconds
    return None


def reconcile(namespace: str, name: str) -> None:
    """Every trigger's reconcile, then the next one due (from the status it left, which the
    informer holds: our own status writes are written through to it). A settled DexModel
    schedules nothing, and cancels nothing either: a request already queued may be an
    InferenceService's or route's event that came in during this reconcile (the Gateway
    applying the route that lets the old version go), which must still run. A time-based one
    left from before it settled costs one reconcile that writes nothing."""
    try:
        controller.reconcile(namespace, name)
    finally:
        delay = requeue_after(informer.DEXMODELS.get(namespace, name))
        if delay is not None:
            REQUEUE.after(namespace, name, delay)


def _requeued(namespace: str, name: str) -> None:
    try:
        reconcile(namespace, name)
    except Exception:
        # No kopf handler backoff stands behind a requeue: it retries at the resync period.
        REQUEUE.after(namespace, name, CONFIG.resync_seconds)
        raise


REQUEUE = Requeue(_requeued)


def _wake_owner(namespace: str, meta: kopf.Meta) -> None:
    # Queued, not run here: the InferenceService's and the route's events of one step join
    # one reconcile while it waits for a thread (Requeue).
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "DexModel":
            REQUEUE.after(namespace, ref["name"], 0.0)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_dexmodel_event(
    type: str | None, body: kopf.Body, name: str, namespace: str | None, **_: Any
) -> None:
    # Level-based, as controller-runtime's: any news of a DexModel queues its reconcile,
    # which reads the informer (updated here first) and decides from the whole object. The
    # echo of our own status write is no news: the write's response is already in the
    # informer, at the same resourceVersion. Not kopf's create/update/resume handlers: those
    # keep a copy of the spec in an annotation on every DexModel, one more write per change
    # (a tenth of all writes at 500 DexModels), and kopf computes a diff for every event.
    # Startup needs no resume handler: kopf's initial listing comes here (type None) too.
    # async: no thread hop; the reconcile runs in the thread pool (Requeue).
    assert namespace, "DexModel is namespaced"
    if type == "DELETED":
        # Gone for good (no finalizer holds a DexModel: nothing of ours outlives it, the
        # InferenceServices and route go with their owner).
        informer.DEXMODELS.observe(body, deleted=True)
        REQUEUE.cancel(namespace, name)
        controller.forget(namespace, name)
        return
    news = informer.DEXMODELS.observe(body)
    if type == "ADDED":
        # Created while we watch: no InferenceService or route of ours can exist yet (one of
        # someone else's is found when our create is refused), so no live read is needed.
        # A DexModel that existed before this process started comes as listed (type None),
        # and its first reconcile reads live.
        informer.DEXMODELS.confirm(namespace, name)
    if news:
        REQUEUE.after(namespace, name, 0.0)


# The InferenceServices' and routes' handlers take every object of their kind, not only
# those labelled as a DexModel's: one whose label is removed must leave the informer.
@kopf.on.event(isvc.KSERVE_GROUP, isvc.KSERVE_VERSION, isvc.ISVC_PLURAL)
async def on_isvc_event(
    type: str | None,
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    namespace: str | None,
    **_: Any,
) -> None:
    # Like controller-runtime's Owns(): a change in the owned InferenceService (KServe
    # reporting a Ready revision or new traffic) wakes its DexModel now, not at next resync.
    # on.event keeps no state on the ISVC (on.field would annotate it). Our own create is
    # echoed back before KServe has said anything: nothing to react to yet; nor is any echo
    # of our own writes (the informer has their response already).
    assert namespace, "InferenceService is namespaced"
    deleted = type == "DELETED"
    news = informer.ISVCS.observe(body, deleted=deleted)
    if MODEL_LABEL in (meta.get("labels") or {}) and (deleted or (news and status)):
        _wake_owner(namespace, meta)


@kopf.on.event(route.GATEWAY_GROUP, route.GATEWAY_VERSION, route.ROUTE_PLURAL)
async def on_route_event(
    type: str | None,
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    namespace: str | None,
    **_: Any,
) -> None:
    # The Gateway's controller accepting the route at its new generation is what says a
    # weight is applied: it wakes the DexModel as the InferenceServices' events do.
    assert namespace, "HTTPRoute is namespaced"
    deleted = type == "DELETED"
    news = informer.ROUTES.observe(body, deleted=deleted)
    if MODEL_LABEL in (meta.get("labels") or {}) and (deleted or (news and status)):
        _wake_owner(namespace, meta)


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
