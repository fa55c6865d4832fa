"""One level-based ``reconcile`` per DexModel, called from every trigger (see ``handlers``).

``reconcile`` takes the DexModel, its InferenceServices and route as the watches last saw
them (``informer``), resolves ``spec.model`` to a target (``source``), and asks the pure
engine (``rollout.decide``) what to do, running the analysis gates when the engine says they
are due. The first reconcile of a DexModel in this process reads live (the watches may not
have listed its InferenceServices yet), and so does a decision that deletes, or that writes
to the InferenceServices or route with no status write to vouch for it. It writes status
*first* (with the resourceVersion it read, so a stale read makes the API server refuse and
the reconcile re-reads instead of overwriting), then converges the InferenceService. A crash
between the two leaves status ahead of the ISVC, and the next reconcile re-applies the same
plan: steps are never skipped nor repeated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dex_operator import API_VERSION, FINALIZER, GROUP, events, informer, isvc, kube, route
from dex_operator.analysis import (
    AnalysisContext,
    DexDriftProvider,
    PrometheusProvider,
    Provider,
    evaluate,
)
from dex_operator.config import CONFIG
from dex_operator.crd.models import DexModelSpec, DexModelStatus, InferenceServiceStatus
from dex_operator.kubeapi import ApiError
from dex_operator.metrics import (
    CANARY_WEIGHT,
    OUTCOME_BY_REASON,
    RECONCILE_ERRORS,
    RECONCILE_SECONDS,
    ROLLOUTS,
)
from dex_operator.rollout import (
    Decision,
    ManualAction,
    Observed,
    Target,
    decide,
    set_condition,
)
from dex_operator.source import (
    FEATURE_SERVICE_MISMATCH,
    RETRIED_REASONS,
    SourceError,
    resolve_target,
)

ACTION_ANNOTATION = f"{GROUP}/rollout-action"
NOT_OWNED = "NotOwned"
APPLIED = "Applied"
SOURCE_RESOLVED = "SourceResolved"
ATTEMPTS = 3

log = logging.getLogger("dex_operator")


class StaleReadError(Exception):
    """What was read may predate our last write: read again before acting on it."""


# One lock per DexModel: its reconciles (queued by its own events and by its
# InferenceServices' and route's) run in parallel threads. ``_locks`` finds a lock only while
# something holds it: a reconcile running, or one waiting for it. So nothing is left behind
# per deleted object, and a reconcile still excludes every other one of its DexModel.
_locks: weakref.WeakValueDictionary[tuple[str, str], threading.Lock]
_locks = weakref.WeakValueDictionary()
_locks_guard = threading.Lock()


def object_lock(namespace: str, name: str) -> threading.Lock:
    """The DexModel's lock, while anyone holds a reference to it."""
    with _locks_guard:
        lock = _locks.get((namespace, name))
        if lock is None:
            lock = _locks[(namespace, name)] = threading.Lock()
        return lock


def reconcile(namespace: str, name: str, *, now: datetime | None = None) -> None:
    """Reconcile one DexModel from the informer's copy (a live read when it has none that
    is confirmed); every write is conditional on the copy's resourceVersion, and a stale
    copy is read again."""
    with object_lock(namespace, name), RECONCILE_SECONDS.time():
        try:
            _attempt(namespace, name, now)
        except ApiError as exc:
            RECONCILE_ERRORS.labels(str(exc.status)).inc()
            raise
        except Exception as exc:
            RECONCILE_ERRORS.labels(type(exc).__name__).inc()
            raise


def _attempt(namespace: str, name: str, now: datetime | None) -> None:
    # Gives up (returns) on conflicts that outlast the retries and on objects gone meanwhile:
    # the next trigger starts over. Those count in RECONCILE_ERRORS too, by reason.
    for attempt in range(ATTEMPTS):
        seen = None
        if attempt == 0 and informer.DEXMODELS.confirmed(namespace, name):
            seen = informer.DEXMODELS.get(namespace, name)
        fresh = seen is None
        obj = kube.get_dexmodel(namespace, name) if fresh else seen
        try:
            if obj is not None:
                _reconcile(obj, now or datetime.now(UTC), fresh=fresh)
                informer.DEXMODELS.confirm(namespace, name)
            return
        except StaleReadError:
            continue
        except ApiError as exc:
            if exc.status == 409 and attempt < ATTEMPTS - 1:
                continue  # a concurrent write (ours or KServe's) moved the object on
            if exc.status in (404, 409):
                RECONCILE_ERRORS.labels(str(exc.status)).inc()
                log.info("reconcile %s/%s: %s, retrying later", namespace, name, exc.reason)
                return
            raise
    RECONCILE_ERRORS.labels(StaleReadError.__name__).inc()
    log.info("reconcile %s/%s: every read was stale, retrying later", namespace, name)


def forget(namespace: str, name: str) -> None:
    """The DexModel is being deleted: the InferenceService goes with its owner (garbage
    collector); only our gauge remains."""
    with contextlib.suppress(KeyError):
        CANARY_WEIGHT.remove(namespace, name)


def _reconcile(obj: dict[str, Any], now: datetime, *, fresh: bool) -> None:
    meta = obj["metadata"]
    if FINALIZER in (meta.get("finalizers") or []):
        # Put there by operator versions whose kopf timers needed it; nothing holds a
        # DexModel now, and left alone it would keep a deleted one from going. The write
        # moves the resourceVersion on: the reconcile starts over from a live read.
        kube.drop_finalizer(meta, FINALIZER)
        raise StaleReadError
    if meta.get("deletionTimestamp"):
        return
    namespace, name = meta["namespace"], meta["name"]
    spec = DexModelSpec.model_validate(obj["spec"])
    raw_status = {k: v for k, v in (obj.get("status") or {}).items() if k != "kopf"}
    before = DexModelStatus.model_validate(raw_status)
    status = before.model_copy(deep=True)
    status.observed_generation = meta.get("generation")

    try:
        target = resolve_target(spec, status, now)
    except SourceError as exc:
        _report_source_error(obj, status, before, exc, now)
        return
    _clear_source_error(status, now)

    isvcs = kube.list_isvcs(namespace, name) if fresh else informer.ISVCS.of_model(namespace, name)
    foreign = [n for n, o in isvcs.items() if not _owned_by(o, meta["uid"])]
    if foreign:
        _report_not_owned(obj, status, before, now, f"InferenceService {foreign[0]}")
        return
    mode = isvc.resolve_mode(spec, _any_isvc(isvcs, name), kube.cluster_default_mode())
    parent = route.ParentRef.parse(CONFIG.gateway)
    current_route = None
    if mode == "Standard":
        current_route = (
            kube.get_route(namespace, name) if fresh else informer.ROUTES.get(namespace, name)
        )
    if current_route is not None and not _owned_by(current_route, meta["uid"]):
        _report_not_owned(obj, status, before, now, f"HTTPRoute {name}")
        return
    prior_plan = isvc.plan_from_status(
        status.stable_storage_uri,
        status.stable_version,
        status.canary_storage_uri,
        status.canary_version,
        status.canary_weight,
    )
    if mode == "Standard":
        observed, mirror = isvc.observe_variants(name, isvcs, current_route, prior_plan, parent)
    else:
        observed, mirror = isvc.observe(isvcs.get(name), mode, prior_plan)
    action = _action(meta)

    decision = decide(spec, status, target, observed, now=now, action=action)
    if decision.analysis_due:
        decision = _with_analysis(
            spec, status, target, observed, now, action, namespace, name, mirror
        )

    engine = decision.status
    writes = _writes(obj, spec, decision, mode, isvcs, current_route, parent)
    if mode == "Standard" and decision.plan is not None:
        # Status names the InferenceServices of the plan just decided, and the URL of the
        # route as written; readiness and traffic are as observed. So the status written
        # before a version's InferenceService is created already names it, and its creation
        # needs no second write to say so (a tenth of all writes at 500 DexModels).
        _, mirror = isvc.observe_variants(name, isvcs, current_route, decision.plan, parent)
        if mirror is not None and writes.route is not None:
            mirror.url = isvc.route_url(writes.route)
    engine.inference_service = mirror or InferenceServiceStatus(name=name)
    # A refusal reported earlier stands while the same writes are still to be made (they
    # are retried each reconcile); it clears once they succeed or are no longer needed.
    new = _with_refusal(engine, _refusal_in(before) if writes.needed else None, now)
    status_changed = new.model_dump(mode="json") != before.model_dump(mode="json")
    if not fresh and (writes.delete or (writes.needed and not status_changed)):
        # Creates and patches may go from the informer: a create cannot overwrite anything
        # (one refused as AlreadyExists is read again, see _apply), and a patch carries the
        # resourceVersion it was decided from. A delete carries only the uid, so it is
        # decided from live reads; and with no status write (conditional on the DexModel's
        # resourceVersion) to vouch for the plan, a plan from an old status could undo a
        # later step on the InferenceServices: confirm it first.
        raise StaleReadError
    meta = dict(meta)
    if status_changed:
        meta["resourceVersion"] = kube.replace_status(meta, _dump(new))
    _emit(obj, decision, before)
    refusal = _apply(writes, live=fresh)
    if action is not None and new.last_action is not None:
        kube.clear_annotation(namespace, name, ACTION_ANNOTATION)
    after = _with_refusal(engine, refusal, now)
    if after.model_dump(mode="json") != new.model_dump(mode="json"):
        kube.replace_status(meta, _dump(after))
    if refusal is not None and refusal != _refusal_in(before):
        events.post(obj, "Warning", refusal.reason, refusal.message)


def _dump(status: DexModelStatus) -> dict[str, Any]:
    # None fields left out: absent is how the API server stores them either way.
    return status.model_dump(by_alias=True, mode="json", exclude_none=True)


def _any_isvc(isvcs: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The object KServe's mode precedence reads: ours of the DexModel's name (Knative),
    else any version's."""
    return isvcs.get(name) or next(iter(isvcs.values()), None)


@dataclass
class Writes:
    """What converges the cluster to a decision's plan, in order: the InferenceServices
    (stable first), the route, then the versions the route no longer sends traffic to."""

    converge: list[tuple[dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)
    delete: list[dict[str, Any]] = field(default_factory=list)
    route: dict[str, Any] | None = None  # the route as the plan wants it (Standard mode)

    @property
    def needed(self) -> bool:
        return bool(self.converge or self.delete)


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


REFUSED_REASON = {"InferenceService": "InferenceServiceRejected", "HTTPRoute": "HTTPRouteRejected"}


def _writes(
    obj: dict[str, Any],
    spec: DexModelSpec,
    decision: Decision,
    mode: isvc.Mode,
    isvcs: dict[str, dict[str, Any]],
    current_route: dict[str, Any] | None,
    parent: route.ParentRef,
) -> Writes:
    writes = Writes()
    if decision.plan is None:
        return writes
    meta = obj["metadata"]
    owner = {
        "apiVersion": API_VERSION,
        "kind": "DexModel",
        "name": meta["name"],
        "uid": meta["uid"],
    }
    desired = isvc.render(
        name=meta["name"],
        namespace=meta["namespace"],
        owner=owner,
        spec=spec,
        plan=decision.plan,
        mode=mode,
        endpoints=isvc.Endpoints(
            tracking_uri=spec.model.registry_url or CONFIG.mlflow_url,
            feast_registry_server=CONFIG.feast_registry_server,
            feast_feature_server=CONFIG.feast_feature_server,
        ),
    )
    for want in desired:
        have = isvcs.get(want["metadata"]["name"])
        # The hash annotation says what we last rendered; a kubectl edit of the spec leaves
        # it as it was, so the spec itself is compared too, or an out-of-band edit would stand.
        if _spec_hash(want) != _spec_hash(have) or isvc.drifted(have, want):
            writes.converge.append((want, have))
    wanted = {w["metadata"]["name"] for w in desired}
    route_settled = True
    if mode == "Standard":
        want_route = route.render(
            name=meta["name"],
            namespace=meta["namespace"],
            owner_ref=isvc.owner_reference(owner),
            spec=spec,
            plan=decision.plan,
            backends=[w["metadata"]["name"] for w in desired],
            parent=parent,
            domain=CONFIG.ingress_domain,
        )
        writes.route = want_route
        if current_route is None or isvc.drifted(current_route, want_route):
            writes.converge.append((want_route, current_route))
            route_settled = False
        else:
            route_settled = route.applied(current_route, parent)
    # A version the plan dropped (promoted over, rolled back, or the pre-route single
    # InferenceService) goes once the Gateway has applied a route that no longer names it.
    for isvc_name_, have in isvcs.items():
        if isvc_name_ in wanted or not route_settled:
            continue
        if mode == "Standard" and route.referenced(current_route, isvc_name_):
            continue
        writes.delete.append(have)
    return writes


def _apply(writes: Writes, *, live: bool) -> Refusal | None:
    """Carry ``writes`` out in order; the first the API server (or KServe's webhook) refuses
    stops the rest, so nothing is applied past it (a canary's route never points at an
    InferenceService that was refused). ``live``: decided from live reads, not the informer."""
    for want, have in writes.converge:
        try:
            kube.converge(want, have)
        except ApiError as exc:
            if not live and have is None and exc.status == 409:
                # The informer had not seen it yet: ours (just created) or someone else's,
                # only a live read can say.
                raise StaleReadError from exc
            refusal = _refusal(want, exc)
            if refusal is None:
                raise
            return refusal
    for gone in writes.delete:
        kube.delete(gone)
    return None


def _refusal(obj: dict[str, Any], exc: ApiError) -> Refusal | None:
    """A write refused for what it says (invalid, forbidden, no such kind, a namesake exists),
    as opposed to a conflict with a concurrent write, which is retried."""
    body: dict[str, Any] = {}
    with contextlib.suppress(ValueError, TypeError):
        body = json.loads(exc.body or "{}")
    kind, name = obj["kind"], obj["metadata"]["name"]
    if exc.status == 409 and body.get("reason") == "AlreadyExists":
        # Someone else's object holds the name: never adopted nor overwritten.
        return Refusal(NOT_OWNED, f"{kind} {name} exists and is not owned by this DexModel")
    if exc.status not in (400, 403, 404, 422):
        return None
    detail = body.get("message") or exc.reason or f"HTTP {exc.status}"
    return Refusal(REFUSED_REASON[kind], f"{kind} {name} refused: {detail}")


def _refusal_in(status: DexModelStatus) -> Refusal | None:
    """The refusal ``status`` reports: Ready=False NotOwned, or Degraded for a refused write."""
    for cond in status.conditions:
        if cond.type == "Ready" and cond.status == "False" and cond.reason == NOT_OWNED:
            return Refusal(NOT_OWNED, cond.message)
        if (
            cond.type == "Degraded"
            and cond.status == "True"
            and cond.reason in REFUSED_REASON.values()
        ):
            return Refusal(cond.reason, cond.message)
    return None


def _with_refusal(engine: DexModelStatus, refusal: Refusal | None, now: datetime) -> DexModelStatus:
    """The engine's status, saying ``refusal`` (or, with None, that none stands)."""
    out = engine.model_copy(deep=True)
    if refusal is not None and refusal.reason == NOT_OWNED:
        set_condition(out, "Ready", False, NOT_OWNED, refusal.message, now)
        out.message = refusal.message
    elif refusal is not None:
        set_condition(out, "Degraded", True, refusal.reason, refusal.message, now)
    elif (stale := _refusal_in(out)) is not None and stale.reason != NOT_OWNED:
        # The engine's copy still carries the earlier refusal: it is over. (A NotOwned
        # Ready is the engine's own again: it sets Ready at every decision.)
        set_condition(out, "Degraded", False, APPLIED, "", now)
    return out


def _action(meta: dict[str, Any]) -> ManualAction | None:
    value = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
    if value == "promote":
        return "promote"
    if value == "abort":
        return "abort"
    return None


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


def _report_source_error(
    obj: dict[str, Any],
    status: DexModelStatus,
    before: DexModelStatus,
    exc: SourceError,
    now: datetime,
) -> None:
    status.message = str(exc)
    if status.stable_storage_uri is None:
        status.phase = "Failed" if exc.reason == FEATURE_SERVICE_MISMATCH else "Pending"
    set_condition(
        status,
        "Ready" if status.stable_storage_uri is None else "Degraded",
        status.stable_storage_uri is not None,
        exc.reason,
        str(exc),
        now,
    )
    if status.model_dump(mode="json") != before.model_dump(mode="json"):
        kube.replace_status(obj["metadata"], _dump(status))
        events.post(obj, "Warning", exc.reason, str(exc))


def _clear_source_error(status: DexModelStatus, now: datetime) -> None:
    """spec.model resolved again: a registry error (or refused version) reported in Degraded
    is over. Left standing, Degraded and the message would go on quoting the outage until the
    rollout's next transition happened to rewrite them (and the requeues would run on)."""
    degraded = next((c for c in status.conditions if c.type == "Degraded"), None)
    if degraded is None or degraded.status != "True" or degraded.reason not in RETRIED_REASONS:
        return
    error = degraded.message
    set_condition(status, "Degraded", False, SOURCE_RESOLVED, "", now)
    progressing = next((c for c in status.conditions if c.type == "Progressing"), None)
    if status.message == error and progressing is not None:
        status.message = progressing.message  # where the rollout stands


def _report_not_owned(
    obj: dict[str, Any], status: DexModelStatus, before: DexModelStatus, now: datetime, what: str
) -> None:
    """An InferenceService of our name that this DexModel does not control: someone else's,
    never adopted nor overwritten. Said in status and, like a source error, one Event per
    change rather than one per resync. Reconciles go on looking (``handlers.in_motion``), so
    the DexModel takes over once that InferenceService is gone."""
    message = f"{what} exists and is not owned by this DexModel"
    status.message = message
    set_condition(status, "Ready", False, NOT_OWNED, message, now)
    if status.model_dump(mode="json") != before.model_dump(mode="json"):
        kube.replace_status(obj["metadata"], _dump(status))
        events.post(obj, "Warning", NOT_OWNED, message)


def _providers(spec: DexModelSpec) -> dict[str, Provider]:
    return {
        "prometheus": PrometheusProvider(
            spec.rollout.prometheus_url or CONFIG.prometheus_url, timeout=CONFIG.http_timeout
        ),
        "dexDrift": DexDriftProvider(CONFIG.monitor_url, timeout=CONFIG.http_timeout),
    }


def _with_analysis(
    spec: DexModelSpec,
    status: DexModelStatus,
    target: Target,
    observed: Observed,
    now: datetime,
    action: ManualAction | None,
    namespace: str,
    name: str,
    mirror: InferenceServiceStatus | None,
) -> Decision:
    revision = (mirror.canary_revision if mirror else None) or ""
    ctx = AnalysisContext(
        # The served name: what the transformer reports as its model (the monitor's
        # inferenceservicename label) and the model servers' model_name; not the registry name.
        model=name,
        namespace=namespace,
        revision=revision,
        version=status.canary_version or "",
    )
    results = evaluate(spec.rollout.analysis, _providers(spec), ctx)
    log.info("analysis %s/%s: %s", namespace, name, [(r.name, r.value, r.passed) for r in results])
    return decide(spec, status, target, observed, now=now, analysis=results, action=action)


def _emit(obj: dict[str, Any], decision: Decision, before: DexModelStatus) -> None:
    meta = obj["metadata"]
    for event in decision.events:
        events.post(obj, event.type, event.reason, event.message)
        log.info("%s/%s %s: %s", meta["namespace"], meta["name"], event.reason, event.message)
        if outcome := OUTCOME_BY_REASON.get(event.reason):
            ROLLOUTS.labels(outcome).inc()
    if decision.status.phase == "Failed" and before.phase != "Failed":
        ROLLOUTS.labels("failed").inc()
    CANARY_WEIGHT.labels(meta["namespace"], meta["name"]).set(decision.status.canary_weight)


def _spec_hash(obj: dict[str, Any] | None) -> str | None:
    if obj is None:
        return None
    return (obj["metadata"].get("annotations") or {}).get(isvc.SPEC_HASH_ANNOTATION)
