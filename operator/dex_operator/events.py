"""Kubernetes Events on DEX's objects, shaped as client-go's event recorder shapes them
(``kubectl describe`` and ``kubectl get events`` read them the same way).

Posted from the thread that decided them, on the operator's own client, not through kopf's
``kopf.event``: kopf queues each one to its event loop and posts it there on a second HTTP
client, which at 500 DexModels (two Events each) cost the loop as much CPU as every watch
event of the run. An Event is a report, not state: one the API server refuses is logged,
and the reconcile that decided it goes on.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from dex_operator import kubeapi
from dex_operator.config import CONFIG

log = logging.getLogger("dex_operator")

EventType = Literal["Normal", "Warning"]
# The API server's limit on an Event's message is 1 KiB; a longer one would be refused.
MAX_MESSAGE = 1024
_INSTANCE = socket.gethostname()  # the pod's name, in a cluster


def render(obj: Mapping[str, Any], type: EventType, reason: str, message: str) -> dict[str, Any]:
    """The Event about ``obj``, as client-go's recorder shapes it."""
    meta = obj["metadata"]
    namespace = meta.get("namespace") or "default"
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {
            # client-go's name: the object's, then the time in nanoseconds, in hex.
            "name": f"{meta['name']}.{time.time_ns():x}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": namespace,
            "uid": meta.get("uid"),
        },
        "type": type,
        "reason": reason,
        "message": message,
        "source": {"component": CONFIG.operator_name},
        "reportingComponent": CONFIG.operator_name,
        "reportingInstance": _INSTANCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def post(obj: Mapping[str, Any], type: EventType, reason: str, message: str) -> None:
    body = render(obj, type, reason, message)
    namespace, name = body["metadata"]["namespace"], body["involvedObject"]["name"]
    try:
        kubeapi.client().request("POST", f"/api/v1/namespaces/{namespace}/events", body=body)
    except (kubeapi.ApiError, OSError, http.client.HTTPException) as exc:
        log.warning("event %s on %s/%s not posted: %s", reason, namespace, name, exc)
