"""Kubernetes API access: the live reads a reconcile confirms with and the writes it ends with.

Over ``kubeapi``'s one pooled client. Reads: the DexModel, its InferenceService, and
KServe's cluster-wide default deployment mode (cached: it rarely changes). Writes: every
write that acts on what was read carries the resourceVersion it was read at, so a stale read
makes the API server refuse (409) instead of overwriting a newer state; the caller reads
again. Every object read or written here is handed to the ``informer`` too. The
InferenceService is created, or patched with the RFC 7386 merge patch that turns
its current spec into the rendered one (``merge_diff``): only what differs is sent, and keys
no longer rendered are removed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dex_operator import API_VERSION, GROUP, MODEL_LABEL, VERSION, informer, isvc, route
from dex_operator.config import CONFIG
from dex_operator.kubeapi import MERGE_PATCH, ApiError, client, custom_path

PLURAL = "dexmodels"
ISVC_CONFIGMAP = "inferenceservice-config"


def _get(path: str) -> dict[str, Any] | None:
    try:
        return client().request("GET", path)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def get_dexmodel(namespace: str, name: str) -> dict[str, Any] | None:
    obj = _get(custom_path(GROUP, VERSION, namespace, PLURAL, name))
    if obj is not None:
        informer.DEXMODELS.observe(obj)
    return obj


def get_isvc(namespace: str, name: str) -> dict[str, Any] | None:
    return _get(
        custom_path(isvc.KSERVE_GROUP, isvc.KSERVE_VERSION, namespace, isvc.ISVC_PLURAL, name)
    )


def list_isvcs(namespace: str, name: str) -> dict[str, dict[str, Any]]:
    """The InferenceServices labelled as this DexModel's (Standard mode: one per version)."""
    listed = client().request(
        "GET",
        custom_path(isvc.KSERVE_GROUP, isvc.KSERVE_VERSION, namespace, isvc.ISVC_PLURAL),
        params={"labelSelector": f"{MODEL_LABEL}={name}"},
    )
    items = listed.get("items") or []
    for item in items:
        # A list's items carry no apiVersion/kind; the informer's entries look like objects.
        item.setdefault("apiVersion", f"{isvc.KSERVE_GROUP}/{isvc.KSERVE_VERSION}")
        item.setdefault("kind", "InferenceService")
        informer.ISVCS.observe(item)
    return {item["metadata"]["name"]: item for item in items}


def get_route(namespace: str, name: str) -> dict[str, Any] | None:
    obj = _get(
        custom_path(route.GATEWAY_GROUP, route.GATEWAY_VERSION, namespace, route.ROUTE_PLURAL, name)
    )
    if obj is not None:
        informer.ROUTES.observe(obj)  # one not labelled as a DexModel's leaves it
    return obj


_mode_cache: tuple[float, str | None] | None = None


def cluster_default_mode() -> str | None:
    """KServe's cluster-wide default mode, cached for a minute (it rarely changes)."""
    global _mode_cache
    now = datetime.now(UTC).timestamp()
    if _mode_cache and now - _mode_cache[0] < 60:
        return _mode_cache[1]
    try:
        cm = client().request(
            "GET", f"/api/v1/namespaces/{CONFIG.kserve_namespace}/configmaps/{ISVC_CONFIGMAP}"
        )
        value = isvc.cluster_default_mode(cm.get("data"))
    except ApiError as exc:
        if exc.status not in (403, 404):
            raise
        value = None
    _mode_cache = (now, value)
    return value


def replace_status(meta: dict[str, Any], status: dict[str, Any]) -> str:
    """Replace the DexModel's status, only if it is still at ``meta``'s resourceVersion;
    the new resourceVersion (a second write in the same reconcile is conditional on it).

    A PUT of the status subresource: the API server keeps everything but status from the
    object it has, and stores what is sent. A merge patch would have it encode the stored
    object, merge and decode again: a tenth of its CPU at 500 DexModels."""
    body = {
        "apiVersion": API_VERSION,
        "kind": "DexModel",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "resourceVersion": meta["resourceVersion"],
        },
        "status": status,
    }
    path = custom_path(GROUP, VERSION, meta["namespace"], PLURAL, meta["name"])
    obj = client().request("PUT", f"{path}/status", body=body)
    informer.DEXMODELS.observe(obj)
    return str(obj["metadata"]["resourceVersion"])


def drop_finalizer(meta: dict[str, Any], finalizer: str) -> None:
    """Remove ``finalizer`` from the DexModel, only if it is still at ``meta``'s
    resourceVersion (the list is replaced whole: a concurrent change is refused, not lost)."""
    kept = [f for f in meta.get("finalizers") or [] if f != finalizer]
    obj = client().request(
        "PATCH",
        custom_path(GROUP, VERSION, meta["namespace"], PLURAL, meta["name"]),
        body={"metadata": {"resourceVersion": meta["resourceVersion"], "finalizers": kept}},
        content_type=MERGE_PATCH,
    )
    informer.DEXMODELS.observe(obj)


def merge_status(meta: dict[str, Any], status: dict[str, Any]) -> str:
    """Merge ``status`` (RFC 7386: what it names, the rest left as it is) into the
    DexModel's, only if it is still at ``meta``'s resourceVersion; the new resourceVersion."""
    obj = client().request(
        "PATCH",
        custom_path(GROUP, VERSION, meta["namespace"], PLURAL, meta["name"]) + "/status",
        body={"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status},
        content_type=MERGE_PATCH,
    )
    informer.DEXMODELS.observe(obj)
    return str(obj["metadata"]["resourceVersion"])


def clear_annotation(namespace: str, name: str, key: str) -> None:
    client().request(
        "PATCH",
        custom_path(GROUP, VERSION, namespace, PLURAL, name),
        body={"metadata": {"annotations": {key: None}}},
        content_type=MERGE_PATCH,
    )


def list_pods(namespace: str, label_selector: str) -> list[dict[str, Any]]:
    listed = client().request(
        "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": label_selector}
    )
    items: list[dict[str, Any]] = listed.get("items") or []
    return items


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
    resourceVersion) into it. What the API server returns is what the informer holds next,
    so a reconcile right after this one sees the write before its watch event arrives."""
    meta = desired["metadata"]
    group, version, plural = _coordinates(desired)
    store = informer.ROUTES if desired["kind"] == "HTTPRoute" else informer.ISVCS
    path = custom_path(group, version, meta["namespace"], plural)
    if current is None:
        store.observe(client().request("POST", path, body=desired))
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
    store.observe(
        client().request("PATCH", f"{path}/{meta['name']}", body=patch, content_type=MERGE_PATCH)
    )


def delete(obj: dict[str, Any]) -> None:
    """Delete exactly this object (its uid): a namesake created meanwhile stays."""
    meta = obj["metadata"]
    group, version, plural = _coordinates(obj)
    try:
        client().request(
            "DELETE",
            custom_path(group, version, meta["namespace"], plural, meta["name"]),
            body={
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "preconditions": {"uid": meta["uid"]},
            },
        )
    except ApiError as exc:
        if exc.status != 404:
            raise
