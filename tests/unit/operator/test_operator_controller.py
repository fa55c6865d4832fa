"""The reconcile entry point without an API server: what it counts in RECONCILE_ERRORS when
a reconcile raises or gives up, and the per-DexModel lock that must not outlive the object.
(The whole reconcile against a real API server is in tests/integration/operator.)"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from dex_operator import controller, informer, kube
from dex_operator.kubeapi import ApiError

NS, NAME = "prod", "churn"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def errors(reason: str) -> float:
    value = REGISTRY.get_sample_value("dex_operator_reconcile_errors_total", {"reason": reason})
    return value or 0.0


def dexmodel() -> dict[str, Any]:
    return {
        "apiVersion": "dex.dataenginex.io/v1alpha1",
        "kind": "DexModel",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": "u-1",
            "generation": 1,
            "resourceVersion": "7",
        },
        "spec": {"model": {"storageUri": "s3://models/churn/1"}},
    }


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every GET of the DexModel, answered with the same object; no InferenceService yet."""
    calls: list[str] = []

    def get_dexmodel(namespace: str, name: str) -> dict[str, Any]:
        calls.append(name)
        return dexmodel()

    monkeypatch.setattr(kube, "get_dexmodel", get_dexmodel)
    monkeypatch.setattr(kube, "list_isvcs", lambda namespace, name: {})
    monkeypatch.setattr(kube, "get_route", lambda namespace, name: None)
    monkeypatch.setattr(kube, "cluster_default_mode", lambda: None)
    return calls


def failing(exc: Exception, calls: list[int]) -> Callable[..., None]:
    def _reconcile(obj: dict[str, Any], now: datetime, *, fresh: bool) -> None:
        calls.append(1)
        raise exc

    return _reconcile


def test_conflicts_that_outlast_the_retries_give_up_and_count(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real reconcile down to the status write, which the API server refuses each time.
    writes: list[dict[str, Any]] = []

    def patch_status(meta: dict[str, Any], status: dict[str, Any]) -> str:
        writes.append(status)
        raise ApiError(status=409, reason="Conflict")

    monkeypatch.setattr(kube, "replace_status", patch_status)
    before = errors("409")
    controller.reconcile(NS, NAME, now=NOW)  # gives up: returns, does not raise
    assert len(writes) == controller.ATTEMPTS
    assert len(reads) == controller.ATTEMPTS  # each retry reads again
    assert errors("409") == before + 1


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ApiError(status=500, reason="Internal Server Error"), "500"),
        (ApiError(status=403, reason="Forbidden"), "403"),
        (ValueError("bad"), "ValueError"),
    ],
)
def test_a_raising_reconcile_counts_its_reason_and_raises(
    reads: list[str], monkeypatch: pytest.MonkeyPatch, exc: Exception, reason: str
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(controller, "_reconcile", failing(exc, calls))
    before = errors(reason)
    with pytest.raises(type(exc)):
        controller.reconcile(NS, NAME, now=NOW)
    assert calls == [1]  # not retried: kopf's handler backoff takes over
    assert errors(reason) == before + 1


def test_object_gone_meanwhile_gives_up_and_counts(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(controller, "_reconcile", failing(ApiError(status=404), calls))
    before = errors("404")
    controller.reconcile(NS, NAME, now=NOW)
    assert calls == [1]
    assert errors("404") == before + 1


def test_reads_stale_every_time_gives_up_and_counts(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(controller, "_reconcile", failing(controller.StaleReadError(), calls))
    before = errors("StaleReadError")
    controller.reconcile(NS, NAME, now=NOW)
    assert len(calls) == controller.ATTEMPTS
    assert errors("StaleReadError") == before + 1


def test_a_failing_read_counts_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def get_dexmodel(namespace: str, name: str) -> dict[str, Any]:
        raise ApiError(status=503, reason="Service Unavailable")

    monkeypatch.setattr(kube, "get_dexmodel", get_dexmodel)
    before = errors("503")
    with pytest.raises(ApiError):
        controller.reconcile(NS, NAME, now=NOW)
    assert errors("503") == before + 1


def test_a_clean_reconcile_counts_nothing(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(controller, "_reconcile", lambda obj, now, *, fresh: calls.append(1))
    reasons = ("409", "404", "500", "StaleReadError", "ValueError")
    before = [errors(r) for r in reasons]
    controller.reconcile(NS, NAME, now=NOW)
    assert calls == [1]
    assert [errors(r) for r in reasons] == before


def test_the_lock_is_shared_while_anyone_holds_it() -> None:
    lock = controller.object_lock(NS, "held")
    # Every reconcile of the DexModel, whatever queued it, gets the very same lock.
    assert controller.object_lock(NS, "held") is lock
    assert (NS, "held") in controller._locks
    del lock
    gc.collect()
    assert (NS, "held") not in controller._locks


def test_a_reconcile_by_name_only_leaves_no_lock_behind(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(controller, "_reconcile", lambda obj, now, *, fresh: None)
    controller.reconcile(NS, "gone", now=NOW)
    gc.collect()
    assert (NS, "gone") not in controller._locks


def test_two_reconciles_of_one_dexmodel_exclude_each_other(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    inside, release = threading.Event(), threading.Event()
    entered: list[str] = []

    def _reconcile(obj: dict[str, Any], now: datetime, *, fresh: bool) -> None:
        entered.append(threading.current_thread().name)
        inside.set()
        assert release.wait(10)

    monkeypatch.setattr(controller, "_reconcile", _reconcile)
    first = threading.Thread(target=controller.reconcile, args=(NS, NAME), name="first")
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=controller.reconcile, args=(NS, NAME), name="second")
    second.start()
    second.join(0.2)
    assert entered == ["first"]  # the second waits for the first's lock
    release.set()
    first.join(10)
    second.join(10)
    assert entered == ["first", "second"]


def test_a_refused_write_becomes_degraded_and_one_warning_quoting_the_refusal(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # KServe's webhook (or the API server) refuses the InferenceService: the rest of the
    # writes (the route) are not made, and the refusal is said where users look.
    message = (
        'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the '
        'request: the InferenceService "churn-v1" is invalid'
    )
    statuses: list[dict[str, Any]] = []
    written: list[str] = []
    warnings: list[tuple[str, str]] = []

    def patch_status(meta: dict[str, Any], status: dict[str, Any]) -> str:
        statuses.append(status)
        return str(int(meta["resourceVersion"]) + 1)

    def refused(desired: dict[str, Any], current: dict[str, Any] | None) -> None:
        written.append(desired["kind"])
        exc = ApiError(status=422, reason="Unprocessable Entity")
        exc.body = json.dumps({"kind": "Status", "reason": "Invalid", "message": message})
        raise exc

    monkeypatch.setattr(kube, "replace_status", patch_status)
    monkeypatch.setattr(kube, "converge", refused)
    monkeypatch.setattr(
        controller.events,
        "post",
        lambda obj, type, reason, message: (
            warnings.append((reason, message)) if type == "Warning" else None
        ),
    )
    controller.reconcile(NS, NAME, now=NOW)
    assert written == ["InferenceService"]  # the route was not written after the refusal
    degraded = [c for c in statuses[-1]["conditions"] if c["type"] == "Degraded"]
    assert degraded[0]["status"] == "True"
    assert degraded[0]["reason"] == "InferenceServiceRejected"
    assert message in degraded[0]["message"]
    assert warnings == [("InferenceServiceRejected", degraded[0]["message"])]


def test_a_create_refused_as_existing_is_decided_again_from_live_reads(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The informer has not seen an InferenceService that exists: the create from informer
    # state is refused as AlreadyExists. That alone does not make it someone else's: the
    # reconcile reads live, and only a live view can call it NotOwned.
    informer.DEXMODELS.confirm(NS, NAME)
    live_lists: list[str] = []

    def list_isvcs(namespace: str, name: str) -> dict[str, Any]:
        live_lists.append(name)
        return {}

    monkeypatch.setattr(kube, "list_isvcs", list_isvcs)
    monkeypatch.setattr(kube, "replace_status", lambda meta, status: meta["resourceVersion"])
    warnings: list[str] = []
    monkeypatch.setattr(
        controller.events,
        "post",
        lambda obj, type, reason, message: warnings.append(reason) if type == "Warning" else None,
    )

    def exists(desired: dict[str, Any], current: dict[str, Any] | None) -> None:
        exc = ApiError(status=409, reason="Conflict")
        exc.body = json.dumps({"kind": "Status", "reason": "AlreadyExists"})
        raise exc

    monkeypatch.setattr(kube, "converge", exists)
    informer.DEXMODELS.observe(dexmodel())
    try:
        controller.reconcile(NS, NAME, now=NOW)
    finally:
        informer.DEXMODELS.observe(dexmodel(), deleted=True)
    assert reads == [NAME]  # attempt 0 took the informer's copy; attempt 1 read live
    assert live_lists == [NAME]
    assert warnings == [controller.NOT_OWNED]


@pytest.mark.parametrize(
    ("status", "meta", "alias", "expected"),
    [
        ({"phase": "Promoted", "observedGeneration": 1}, {"generation": 1}, None, None),
        ({"phase": "Progressing", "observedGeneration": 1}, {"generation": 1}, None, "resync"),
        ({"phase": "Promoted", "observedGeneration": 1}, {"generation": 2}, None, "resync"),
        ({"phase": "Promoted", "observedGeneration": 1}, {"generation": 1}, "champion", "poll"),
    ],
)
def test_requeued_only_while_time_can_change_the_outcome(
    status: dict[str, Any], meta: dict[str, Any], alias: str | None, expected: str | None
) -> None:
    from dex_operator import handlers
    from dex_operator.config import CONFIG

    model = {"name": "churn", **({"alias": alias} if alias else {})}
    obj = {"metadata": {"name": NAME, **meta}, "spec": {"model": model}, "status": status}
    delay = {None: None, "resync": CONFIG.resync_seconds, "poll": CONFIG.registry_poll_seconds}
    assert handlers.requeue_after(obj) == delay[expected]
    deleting = {**obj, "metadata": {**obj["metadata"], "deletionTimestamp": "2025-01-01T00:00:00Z"}}
    assert handlers.requeue_after(deleting) is None
