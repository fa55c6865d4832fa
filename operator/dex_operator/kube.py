"""Kubernetes API access: the reads a reconcile starts from and the writes it ends with.

One pooled ``ApiClient`` for the process. Reads: the DexModel, its InferenceService, and
KServe's cluster-wide default deployment mode (cached: it rarely changes). Writes: every
write that acts on what was read carries the resourceVersion it was read at, so a stale read
makes the API server refuse (409) instead of overwriting a newer state; the caller reads
again. The InferenceService is created, or patched with the RFC 7386 merge patch that turns
its current spec into the rendered one (``merge_diff``): only what differs is sent, and keys
no longer rendered are removed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from dex_operator import GROUP, MODEL_LABEL, VERSION, isvc, route
from dex_operator.config import CONFIG

PLURAL = "dexmodels"
ISVC_CONFIGMAP = "inferenceservice-config"


@cache
def api_client() -> client.ApiClient:
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
    return client.CustomObjectsApi(api_client())


def get_dexmodel(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = _custom().get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def get_isvc(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = _custom().get_namespaced_custom_object(
            isvc.KSERVE_GROUP, isvc.KSERVE_VERSION, namespace, isvc.ISVC_PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def list_isvcs(namespace: str, name: str) -> dict[str, dict[str, Any]]:
    """The InferenceServices labelled as this DexModel's (Standard mode: one per version)."""
    listed = _custom().list_namespaced_custom_object(
        isvc.KSERVE_GROUP,
        isvc.KSERVE_VERSION,
        namespace,
        isvc.ISVC_PLURAL,
        label_selector=f"{MODEL_LABEL}={name}",
    )
    return {item["metadata"]["name"]: item for item in listed.get("items") or []}


def get_route(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = _custom().get_namespaced_custom_object(
            route.GATEWAY_GROUP, route.GATEWAY_VERSION, namespace, route.ROUTE_PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


_mode_cache: tuple[float, str | None] | None = None


def cluster_default_mode() -> str | None:
    """KServe's cluster-wide default mode, cached for a minute (it rarely changes)."""
    global _mode_cache
    now = datetime.now(UTC).timestamp()
    if _mode_cache and now - _mode_cache[0] < 60:
        return _mode_cache[1]
    try:
        cm = client.CoreV1Api(api_client()).read_namespaced_config_map(
            ISVC_CONFIGMAP, CONFIG.kserve_namespace
        )
        value = isvc.cluster_default_mode(cm.data)
    except ApiException as exc:
        if exc.status not in (403, 404):
            raise
        value = None
    _mode_cache = (now, value)
    return value


def patch_status(meta: dict[str, Any], status: dict[str, Any]) -> str:
    """Replace the DexModel's status, only if it is still at ``meta``'s resourceVersion;
    the new resourceVersion (a second write in the same reconcile is conditional on it)."""
    obj: dict[str, Any] = _custom().patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        meta["namespace"],
        PLURAL,
        meta["name"],
        {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status},
    )
    return str(obj["metadata"]["resourceVersion"])


def clear_annotation(namespace: str, name: str, key: str) -> None:
    _custom().patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"annotations": {key: None}}}
    )


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


def _coordinates(obj: dict[str, Any]) -> tuple[str, str, str]:
    group, version = obj["apiVersion"].split("/")
    plural = route.ROUTE_PLURAL if obj["kind"] == "HTTPRoute" else isvc.ISVC_PLURAL
    return group, version, plural


def converge(desired: dict[str, Any], current: dict[str, Any] | None) -> None:
    """Create ``desired`` (an InferenceService or HTTPRoute), or patch ``current`` (at its
    resourceVersion) into it."""
    meta = desired["metadata"]
    group, version, plural = _coordinates(desired)
    api = _custom()
    if current is None:
        api.create_namespaced_custom_object(group, version, meta["namespace"], plural, desired)
        return
    patch = {
        "metadata": {
            "resourceVersion": current["metadata"]["resourceVersion"],
            "labels": meta.get("labels"),
            "annotations": meta.get("annotations"),
        },
        "spec": merge_diff(current.get("spec") or {}, desired["spec"]),
    }
    patch["metadata"] = {k: v for k, v in patch["metadata"].items() if v is not None}
    api.patch_namespaced_custom_object(
        group, version, meta["namespace"], plural, meta["name"], patch
    )


def delete(obj: dict[str, Any]) -> None:
    """Delete exactly this object (its uid): a namesake created meanwhile stays."""
    meta = obj["metadata"]
    group, version, plural = _coordinates(obj)
    try:
        _custom().delete_namespaced_custom_object(
            group,
            version,
            meta["namespace"],
            plural,
            meta["name"],
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=meta["uid"])),
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
