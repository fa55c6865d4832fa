"""kopf wiring: settings, and one level-based ``reconcile`` called from every trigger.

create/update/resume react at once; a change of the owned InferenceService (KServe reporting
readiness or traffic) wakes its DexModel; timers run only while time can change the outcome
(a hold expiring, readiness awaited, a registry retry, an alias to poll), so settled models
cost nothing at rest. ``reconcile`` asks the pure engine (``rollout.decide``) what to do,
writes status *first* (with the resourceVersion it read, so a stale read makes the API server
refuse and the reconcile re-reads instead of overwriting), then converges the
InferenceService. A crash between the two leaves status ahead of the ISVC, and the next
reconcile re-applies the same plan: steps are never skipped nor repeated.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from dex.contract import TAG_FEATURE_SERVICE
from dex_operator import API_VERSION, GROUP, VERSION, isvc
from dex_operator.analysis import (
    AnalysisContext,
    DexDriftProvider,
    PrometheusProvider,
    Provider,
    evaluate,
)
from dex_operator.config import OperatorConfig
from dex_operator.crd.models import DexModelSpec, DexModelStatus, InferenceServiceStatus
from dex_operator.metrics import CANARY_WEIGHT, OUTCOME_BY_REASON, RECONCILE_SECONDS, ROLLOUTS
from dex_operator.registry import MlflowRegistry, RegistryError
from dex_operator.rollout import (
    Decision,
    ManualAction,
    Observed,
    Target,
    decide,
    set_condition,
)

PLURAL = "dexmodels"
FINALIZER = f"{GROUP}/operator"
ACTION_ANNOTATION = f"{GROUP}/rollout-action"
ISVC_CONFIGMAP = "inferenceservice-config"

CONFIG = OperatorConfig()
log = logging.getLogger("dex_operator")


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
    _kube()


@cache
def _kube() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    conf = client.Configuration.get_default_copy()
    # One pooled connection per worker thread; the default (5 per CPU) makes busy threads
    # discard connections and pay a TLS handshake per request.
    conf.connection_pool_maxsize = CONFIG.worker_limit
    return client.ApiClient(conf)


def _custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(_kube())


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(namespace: str, name: str) -> threading.Lock:
    # Timers and change handlers for one object may run in parallel threads.
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


# Phases in which nothing changes by itself: only an event (the spec, an annotation, the
# InferenceService) or an alias move can start work again.
SETTLED_PHASES = frozenset({"Promoted", "RolledBack", "Failed"})
# Reasons _report_source_error records: the registry may answer differently later.
RETRIED_REASONS = frozenset({"RegistryError", "FeatureServiceMismatch"})


def in_motion(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
    """Whether time alone can change this DexModel's outcome; only then does ``resync`` run."""
    if status.get("phase") not in SETTLED_PHASES or status.get("canaryStorageUri"):
        return True
    if status.get("observedGeneration") != meta.get("generation"):
        return True
    return any(c.get("reason") in RETRIED_REASONS for c in status.get("conditions") or [])


def follows_alias(spec: kopf.Spec, **_: Any) -> bool:
    return bool((spec.get("model") or {}).get("alias"))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def on_change(name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
    assert namespace, "DexModel is namespaced"
    reconcile(namespace, name, body=body)


@kopf.timer(
    GROUP, VERSION, PLURAL, interval=CONFIG.resync_seconds, initial_delay=0.5, when=in_motion
)
def resync(name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
    assert namespace, "DexModel is namespaced"
    reconcile(namespace, name, body=body)


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.registry_poll_seconds, when=follows_alias)
def poll_registry(name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
    # _resolve_target asks the registry once the last answer is registry_poll_seconds old.
    assert namespace, "DexModel is namespaced"
    reconcile(namespace, name, body=body)


@kopf.on.event(
    isvc.KSERVE_GROUP,
    isvc.KSERVE_VERSION,
    isvc.ISVC_PLURAL,
    labels={isvc.MODEL_LABEL: kopf.PRESENT},
)
def on_isvc_event(
    type: str | None, meta: kopf.Meta, status: kopf.Status, namespace: str | None, **_: Any
) -> None:
    # Like controller-runtime's Owns(): a change in the owned InferenceService (KServe
    # reporting a Ready revision or new traffic) wakes its DexModel now, not at next resync.
    # on.event keeps no state on the ISVC (on.field would annotate it). Our own create is
    # echoed back before KServe has said anything: nothing to react to yet.
    assert namespace, "InferenceService is namespaced"
    if type != "DELETED" and not status:
        return
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "DexModel":
            reconcile(namespace, ref["name"])


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def on_delete(name: str, namespace: str | None, **_: Any) -> None:
    assert namespace, "DexModel is namespaced"
    # The InferenceService goes with its owner (garbage collector); only our gauge remains.
    with contextlib.suppress(KeyError):
        CANARY_WEIGHT.remove(namespace, name)


class StaleReadError(Exception):
    """What was read may predate our last write: read again before acting on it."""


def reconcile(
    namespace: str, name: str, *, body: kopf.Body | None = None, now: datetime | None = None
) -> None:
    """Reconcile one DexModel. ``body`` (what kopf last saw) saves a GET; every write made
    from it is conditional on its resourceVersion, and a stale one is read again."""
    with _lock(namespace, name), RECONCILE_SECONDS.time():
        for attempt in range(3):
            fresh = body is None or attempt > 0
            obj = _get_dexmodel(namespace, name) if fresh or body is None else _snapshot(body)
            try:
                if obj is not None:
                    _reconcile(obj, now or datetime.now(UTC), fresh=fresh)
                return
            except StaleReadError:
                continue
            except ApiException as exc:
                if exc.status == 409 and attempt < 2:
                    continue  # a concurrent write (ours or KServe's) moved the object on
                if exc.status in (404, 409):
                    log.info("reconcile %s/%s: %s, retrying later", namespace, name, exc.reason)
                    return
                raise


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    # Timers get a live body that kopf swaps as events arrive. Metadata (with the
    # resourceVersion every write is conditional on) is copied first, so a copy spanning a
    # swap pairs an older resourceVersion with newer data, which the API server refuses.
    keys = ("apiVersion", "kind", "metadata", "spec", "status")
    return {key: body[key] for key in keys if key in body}


def _get_dexmodel(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = _custom().get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def _get_isvc(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = _custom().get_namespaced_custom_object(
            isvc.KSERVE_GROUP, isvc.KSERVE_VERSION, namespace, isvc.ISVC_PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


_mode_cache: tuple[float, str | None] | None = None


def _cluster_default_mode() -> str | None:
    """KServe's cluster-wide default mode, cached for a minute (it rarely changes)."""
    global _mode_cache
    now = datetime.now(UTC).timestamp()
    if _mode_cache and now - _mode_cache[0] < 60:
        return _mode_cache[1]
    try:
        cm = client.CoreV1Api(_kube()).read_namespaced_config_map(
            ISVC_CONFIGMAP, CONFIG.kserve_namespace
        )
        value = isvc.cluster_default_mode(cm.data)
    except ApiException as exc:
        if exc.status not in (403, 404):
            raise
        value = None
    _mode_cache = (now, value)
    return value


class SourceError(RuntimeError):
    """spec.model cannot be resolved right now; reported in status, retried on resync."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _resolve_target(spec: DexModelSpec, status: DexModelStatus, now: datetime) -> Target:
    src = spec.model
    if src.storage_uri:
        digest = hashlib.sha256(src.storage_uri.encode()).hexdigest()[:8]
        return Target(src.storage_uri, f"uri-{digest}")
    key = f"{src.name}:{src.version}" if src.version else f"{src.name}@{src.alias}"
    fresh = status.registry_checked_at is not None and (
        src.version is not None
        or now - status.registry_checked_at < timedelta(seconds=CONFIG.registry_poll_seconds)
    )
    if status.resolved_from == key and fresh and status.resolved_storage_uri:
        return Target(status.resolved_storage_uri, status.resolved_version or "")
    registry = MlflowRegistry(src.registry_url or CONFIG.mlflow_url, timeout=CONFIG.http_timeout)
    try:
        resolved = registry.resolve(src)
    except RegistryError as exc:
        raise SourceError("RegistryError", str(exc)) from exc
    finally:
        registry.close()
    trained_on = resolved.tags.get(TAG_FEATURE_SERVICE)
    if spec.features and trained_on and trained_on != spec.features.feature_service:
        raise SourceError(
            "FeatureServiceMismatch",
            f"version {resolved.version} was trained on feature service {trained_on!r}, "
            f"spec.features.featureService is {spec.features.feature_service!r}",
        )
    status.resolved_from, status.registry_checked_at = key, now
    status.resolved_version, status.resolved_storage_uri = resolved.version, resolved.storage_uri
    return Target(resolved.storage_uri, resolved.version)


def _providers(spec: DexModelSpec) -> dict[str, Provider]:
    return {
        "prometheus": PrometheusProvider(
            spec.rollout.prometheus_url or CONFIG.prometheus_url, timeout=CONFIG.http_timeout
        ),
        "dexDrift": DexDriftProvider(CONFIG.monitor_url, timeout=CONFIG.http_timeout),
    }


def _action(meta: dict[str, Any]) -> ManualAction | None:
    value = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
    if value == "promote":
        return "promote"
    if value == "abort":
        return "abort"
    return None


def _reconcile(obj: dict[str, Any], now: datetime, *, fresh: bool) -> None:
    meta = obj["metadata"]
    if meta.get("deletionTimestamp"):
        return
    namespace, name = meta["namespace"], meta["name"]
    spec = DexModelSpec.model_validate(obj["spec"])
    raw_status = {k: v for k, v in (obj.get("status") or {}).items() if k != "kopf"}
    before = DexModelStatus.model_validate(raw_status)
    status = before.model_copy(deep=True)
    status.observed_generation = meta.get("generation")

    try:
        target = _resolve_target(spec, status, now)
    except SourceError as exc:
        _report_source_error(obj, status, before, exc, now)
        return

    current = _get_isvc(namespace, name)
    if current is not None and not _owned_by(current, meta["uid"]):
        kopf.warn(
            _ref(obj),
            reason="NotOwned",
            message=f"InferenceService {name} exists and is not owned by this DexModel",
        )
        return
    mode = isvc.resolve_mode(spec, current, _cluster_default_mode())
    prior_plan = isvc.plan_from_status(
        status.stable_storage_uri,
        status.stable_version,
        status.canary_storage_uri,
        status.canary_version,
        status.canary_weight,
    )
    observed, mirror = isvc.observe(current, mode, prior_plan)
    action = _action(meta)

    decision = decide(spec, status, target, observed, now=now, action=action)
    if decision.analysis_due:
        decision = _with_analysis(
            spec, status, target, observed, now, action, namespace, name, mirror
        )

    new = decision.status
    new.inference_service = mirror or InferenceServiceStatus(name=name)
    status_changed = new.model_dump(mode="json") != before.model_dump(mode="json")
    desired = _desired(obj, spec, decision, mode)
    isvc_changed = desired is not None and _spec_hash(desired) != _spec_hash(current)
    if isvc_changed and not status_changed and not fresh:
        # A plan from an old status could undo a later step on the ISVC: confirm it first.
        raise StaleReadError
    if status_changed:
        _custom().patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {
                "metadata": {"resourceVersion": meta["resourceVersion"]},
                "status": new.model_dump(by_alias=True, mode="json"),
            },
        )
    _emit(obj, decision, before)
    if desired is not None and isvc_changed:
        _converge_isvc(desired, current)
    if action is not None and new.last_action is not None:
        _custom().patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": {ACTION_ANNOTATION: None}}},
        )


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
        model=spec.model.name or name,
        namespace=namespace,
        revision=revision,
        version=status.canary_version or "",
    )
    results = evaluate(spec.rollout.analysis, _providers(spec), ctx)
    log.info("analysis %s/%s: %s", namespace, name, [(r.name, r.value, r.passed) for r in results])
    return decide(spec, status, target, observed, now=now, analysis=results, action=action)


def _ref(obj: dict[str, Any]) -> Any:
    """kopf's event API is typed for its Body wrapper; it only reads the object reference."""
    return obj


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
        status.phase = "Failed" if exc.reason == "FeatureServiceMismatch" else "Pending"
    set_condition(
        status,
        "Ready" if status.stable_storage_uri is None else "Degraded",
        status.stable_storage_uri is not None,
        exc.reason,
        str(exc),
        now,
    )
    if status.model_dump(mode="json") != before.model_dump(mode="json"):
        meta = obj["metadata"]
        _custom().patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            meta["namespace"],
            PLURAL,
            meta["name"],
            {
                "metadata": {"resourceVersion": meta["resourceVersion"]},
                "status": status.model_dump(by_alias=True, mode="json"),
            },
        )
        kopf.warn(_ref(obj), reason=exc.reason, message=str(exc))


def _emit(obj: dict[str, Any], decision: Decision, before: DexModelStatus) -> None:
    meta = obj["metadata"]
    for event in decision.events:
        kopf.event(_ref(obj), type=event.type, reason=event.reason, message=event.message)
        log.info("%s/%s %s: %s", meta["namespace"], meta["name"], event.reason, event.message)
        if outcome := OUTCOME_BY_REASON.get(event.reason):
            ROLLOUTS.labels(outcome).inc()
    if decision.status.phase == "Failed" and before.phase != "Failed":
        ROLLOUTS.labels("failed").inc()
    CANARY_WEIGHT.labels(meta["namespace"], meta["name"]).set(decision.status.canary_weight)


def merge_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch turning ``old`` into ``new`` (removed keys become null)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            sub = merge_diff(old[key], value)
            if sub:
                patch[key] = sub
        elif old.get(key) != value or key not in old:
            patch[key] = value
    return patch


def _desired(
    obj: dict[str, Any], spec: DexModelSpec, decision: Decision, mode: isvc.Mode
) -> dict[str, Any] | None:
    if decision.plan is None:
        return None
    meta = obj["metadata"]
    return isvc.render(
        name=meta["name"],
        namespace=meta["namespace"],
        owner={
            "apiVersion": API_VERSION,
            "kind": "DexModel",
            "name": meta["name"],
            "uid": meta["uid"],
        },
        spec=spec,
        plan=decision.plan,
        mode=mode,
        endpoints=isvc.Endpoints(tracking_uri=spec.model.registry_url or CONFIG.mlflow_url),
    )


def _spec_hash(obj: dict[str, Any] | None) -> str | None:
    if obj is None:
        return None
    return (obj["metadata"].get("annotations") or {}).get(isvc.SPEC_HASH_ANNOTATION)


def _converge_isvc(desired: dict[str, Any], current: dict[str, Any] | None) -> None:
    meta = desired["metadata"]
    api = _custom()
    if current is None:
        api.create_namespaced_custom_object(
            isvc.KSERVE_GROUP, isvc.KSERVE_VERSION, meta["namespace"], isvc.ISVC_PLURAL, desired
        )
        return
    patch = {
        "metadata": {
            "resourceVersion": current["metadata"]["resourceVersion"],
            "labels": meta["labels"],
            "annotations": meta["annotations"],
        },
        "spec": merge_diff(current.get("spec") or {}, desired["spec"]),
    }
    api.patch_namespaced_custom_object(
        isvc.KSERVE_GROUP,
        isvc.KSERVE_VERSION,
        meta["namespace"],
        isvc.ISVC_PLURAL,
        meta["name"],
        patch,
    )
