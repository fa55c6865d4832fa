"""kopf wiring for DexPipelines: create/update/resume reconcile at once, retried with backoff
while KFP is unreachable; a timer keeps the status in step with KFP's runs (KFP has no watch
to wake the operator); deletion removes the recurring run the schedule made (kopf's finalizer
holds the DexPipeline until it is gone).

Handlers of one DexPipeline may overlap (a timer tick during an update's retry); a lock per
DexPipeline keeps two from deciding "no recurring run yet" at once.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

import kopf

from dex_operator import GROUP, VERSION, events, pipeline_controller
from dex_operator.config import CONFIG
from dex_operator.kfp import KfpError, KfpUnreachableError

PLURAL = "dexpipelines"
# Gives up removing the recurring run after this many attempts (~20 min of backoff): a KFP
# that is gone for good must not hold a DexPipeline's deletion forever.
CLEANUP_ATTEMPTS = 8

_LOCKS: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)


def _lock(body: kopf.Body) -> threading.Lock:
    return _LOCKS[(str(body.metadata.namespace), str(body.metadata.name))]


def _reconcile(body: kopf.Body, patch: kopf.Patch, retry: int) -> float | None:
    with _lock(body):
        outcome = pipeline_controller.reconcile(body, retry)
    patch.status.update(pipeline_controller.status_patch(outcome.status))
    pipeline_controller.post(body, outcome.events)
    return outcome.retry_after


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def on_change(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
    delay = _reconcile(body, patch, retry)
    if delay is not None:
        raise kopf.TemporaryError("KFP unreachable; retrying", delay=delay)


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.pipeline_sync_seconds, initial_delay=5.0)
def sync(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    if body.metadata.get("deletionTimestamp"):
        return
    _reconcile(body, patch, 0)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def on_delete(body: kopf.Body, retry: int, **_: Any) -> None:
    try:
        with _lock(body):
            pipeline_controller.cleanup(body)
    except KfpError as exc:
        transient = isinstance(exc, KfpUnreachableError) or (exc.status or 0) >= 500
        if transient and retry + 1 < CLEANUP_ATTEMPTS:
            raise kopf.TemporaryError(str(exc), delay=pipeline_controller.backoff(retry)) from exc
        events.post(
            body, "Warning", "CleanupSkipped", f"the KFP recurring run was not removed: {exc}"
        )
    finally:
        _LOCKS.pop((str(body.metadata.namespace), str(body.metadata.name)), None)
