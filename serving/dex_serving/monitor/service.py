"""The monitor's HTTP service.

POST /            CloudEvents: binary (KServe logger), structured, or batched; 200 after commit
GET  /healthz     liveness;  GET /readyz: store open and model resolved
GET  /metrics     Prometheus: dex_drift_share{model,version}, dex_feature_drift_score{...}
GET  /drift       latest drift results;  POST /drift/compute: compute now
GET  /report      latest Evidently HTML report
GET  /events/count

python -m dex_serving.run monitor --model models:/churn-classifier@champion --state-dir .dex/monitor
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import TypeAdapter, ValidationError

from dex import heap, metrics, registry
from dex_serving import logs
from dex_serving.eventlog import BATCH_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE, CloudEvent
from dex_serving.monitor import drift
from dex_serving.monitor.store import EventStore, StorageError
from dex_serving.monitor.trigger import CommandTrigger
from dex_serving.settings import MonitorSettings

log = logging.getLogger("dex.serving.monitor")


class EventsError(ValueError):
    pass


_BATCH = TypeAdapter(list[CloudEvent])


class ModelUnavailableError(RuntimeError):
    """The monitored model cannot be resolved (yet): not registered, or no registry."""


def parse_events(headers: dict[str, str], body: bytes) -> list[CloudEvent]:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == BATCH_CONTENT_TYPE:
        # A sender's batch in one pass of pydantic-core, about a third of the CPU of
        # json.loads plus a model per event. One it refuses takes the way below, which
        # says what is wrong.
        with contextlib.suppress(ValidationError):
            return _BATCH.validate_json(body)
    try:
        data: Any = json.loads(body) if body else None
    except ValueError as exc:
        raise EventsError(f"body is not JSON: {exc}") from exc
    try:
        if content_type == BATCH_CONTENT_TYPE:
            if not isinstance(data, list):
                raise EventsError("a CloudEvents batch must be a JSON array")
            return [CloudEvent.model_validate(e) for e in data]
        if content_type == STRUCTURED_CONTENT_TYPE:
            return [CloudEvent.model_validate(data)]
        if "ce-id" in headers:
            return [CloudEvent.from_binary(headers, data)]
    except ValidationError as exc:
        raise EventsError(
            f"not a CloudEvent: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
        ) from exc
    raise EventsError("expected a CloudEvent (ce-* headers or a cloudevents content type)")


class Monitor:
    """State shared by the handlers: store, model contracts, reference frames, gauges."""

    def __init__(self, settings: MonitorSettings) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.settings = settings
        self.store = EventStore(settings.db_path)
        self.ref = registry.ModelRef.parse(settings.model)
        if self.ref.name is None:
            raise ValueError(f"--model {settings.model!r}: expected models:/<name>@<alias|version>")
        # Resolved on first use, not at start: a platform installs the monitor before any
        # model is registered, and it must be Ready (accepting connections) by then.
        self._model: registry.ResolvedModel | None = None
        self._models: dict[str | None, registry.ResolvedModel] = {}
        self._references: dict[str | None, Any] = {}
        self._seen_rows: dict[tuple[str | None, str | None], int] = {}
        self.latest: dict[str, drift.DriftResult] = {}
        self._frozen_after_drift = False
        self.trigger = CommandTrigger(
            settings.trigger_command, settings.trigger_cooldown_s, settings.state_dir / "triggers"
        )
        self._compute_lock = asyncio.Lock()
        self.metrics = CollectorRegistry()
        labels = list(metrics.MODEL_LABELS)
        self.g_share = Gauge(
            metrics.DRIFT_SHARE, "Share of drifted features.", labels, registry=self.metrics
        )
        self.g_detected = Gauge(
            metrics.DRIFT_DETECTED, "1 when dataset drift.", labels, registry=self.metrics
        )
        self.g_rows = Gauge(
            metrics.DRIFT_WINDOW_ROWS, "Rows in the drift window.", labels, registry=self.metrics
        )
        self.g_feature = Gauge(
            metrics.FEATURE_DRIFT_SCORE,
            "Per-feature drift statistic (see method).",
            [*labels, "feature", "method"],
            registry=self.metrics,
        )
        self.c_events = Counter(
            metrics.MONITOR_EVENTS, "Events stored.", ["type"], registry=self.metrics
        )
        self.c_storage_errors = Counter(
            metrics.MONITOR_STORAGE_ERRORS,
            "Event batches refused because storage failed.",
            registry=self.metrics,
        )
        self.c_triggers = Counter(
            metrics.DRIFT_TRIGGERS, "Drift triggers fired.", labels, registry=self.metrics
        )
        self.h_compute = Histogram(
            metrics.DRIFT_COMPUTE_SECONDS,
            "Drift computation time.",
            registry=self.metrics,
            buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30),
        )

    @property
    def model(self) -> registry.ResolvedModel:
        """The default version and baseline; :class:`ModelUnavailableError` until the
        registry has it (events then get a 503, and senders keep them)."""
        if self._model is None:
            try:
                resolved = registry.resolve(self.ref)
            except Exception as exc:  # registry down or model not registered yet
                raise ModelUnavailableError(str(exc)) from exc
            if resolved.contract is None:
                raise ModelUnavailableError(f"{resolved.uri} has no feature contract (dex.* tags)")
            self._models.setdefault(resolved.version, resolved)
            self._model = resolved
            heap.freeze()  # resolving imported MLflow's client: keep it out of collections
        return self._model

    def columns_for(self, model: str | None, version: str | None) -> list[str]:
        resolved = self._models.get(version, self.model)
        assert resolved.contract is not None
        return list(resolved.contract.feature_columns)

    def categorical_for(self, model: str | None, version: str | None) -> list[str]:
        resolved = self._models.get(version, self.model)
        assert resolved.contract is not None
        return list(resolved.contract.categorical_features)

    def _resolved(self, version: str | None) -> registry.ResolvedModel:
        if version not in self._models and version is not None:
            self._models[version] = registry.resolve(
                registry.ModelRef(name=self.ref.name, version=version)
            )
        return self._models.get(version, self.model)

    def _reference(self, version: str | None) -> Any:
        if version not in self._references:
            resolved = self._resolved(version)
            folder = self.settings.state_dir / "reference" / f"v{resolved.version}"
            path = registry.download_reference(resolved, folder)
            self._references[version] = drift.load_reference(
                path, self.columns_for(resolved.name, version)
            )
            log.info(
                logs.kv(
                    "reference loaded",
                    version=resolved.version,
                    rows=len(self._references[version]),
                )
            )
        return self._references[version]

    def add(self, events: list[CloudEvent]) -> int:
        new = self.store.add(events, self.columns_for, self.model.version, self.categorical_for)
        for kind, count in collections.Counter(e.type.rsplit(".", 1)[-1] for e in events).items():
            self.c_events.labels(type=kind).inc(count)
        return new

    def compute_all(self, force: bool) -> list[drift.DriftResult]:
        import pandas as pd

        results: list[drift.DriftResult] = []
        for model, version in self.store.versions():
            window = self.store.window(model, version, self.settings.window)
            key = (model, version)
            if len(window) < self.settings.min_rows:
                continue
            if not force and self._seen_rows.get(key) == self.store.counts()["rows"]:
                continue
            self._seen_rows[key] = self.store.counts()["rows"]
            try:
                reference = self._reference(version)
            except Exception as exc:  # a bad baseline must not stop the monitor serving
                log.error(logs.kv("no drift baseline", version=version, error=str(exc)))
                continue
            columns = self.columns_for(model, version)
            current = pd.DataFrame(window).reindex(columns=columns).dropna()
            with self.h_compute.time():
                result = drift.compute(
                    reference,
                    current,
                    columns=columns,
                    method=self.settings.method,
                    threshold=self.settings.threshold,
                    drift_share=self.settings.drift_share,
                    model=model,
                    version=version,
                    html_path=self.settings.report_path,
                )
            self._export(result)
            result.triggered = self.trigger.maybe_fire(result)
            if result.triggered:
                self.c_triggers.labels(model=str(model), version=str(version)).inc()
            log.info(
                logs.kv(
                    "drift computed",
                    model=model,
                    version=version,
                    rows=result.rows,
                    share=f"{result.drift_share:.3f}",
                    drift=result.dataset_drift,
                    seconds=result.seconds,
                )
            )
            self.latest[f"{model}/{version}"] = result
            results.append(result)
        return results

    def _export(self, result: drift.DriftResult) -> None:
        labels = {"model": str(result.model), "version": str(result.version)}
        self.g_share.labels(**labels).set(result.drift_share)
        self.g_detected.labels(**labels).set(1.0 if result.dataset_drift else 0.0)
        self.g_rows.labels(**labels).set(result.rows)
        for feature, score in result.scores.items():
            self.g_feature.labels(**labels, feature=feature, method=result.method).set(score)

    async def compute(self, force: bool) -> list[drift.DriftResult]:
        async with self._compute_lock:
            results = await asyncio.to_thread(self.compute_all, force)
            if results and not self._frozen_after_drift:
                # The first computation imported Evidently and read the references.
                self._frozen_after_drift = True
                heap.freeze()
            return results

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.compute(force=False)
            except Exception:
                log.exception("drift computation failed")


def create_app(settings: MonitorSettings) -> FastAPI:
    monitor = Monitor(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(monitor.loop())
        frozen = heap.freeze()
        log.info(
            logs.kv(
                "monitor ready",
                frozen_objects=frozen,
                model=settings.model,
                db=str(settings.db_path),
                method=settings.method,
                threshold=settings.threshold,
                drift_share=settings.drift_share,
                window=settings.window,
                trigger=repr(settings.trigger_command),
            )
        )
        try:
            yield
        finally:
            task.cancel()
            monitor.store.close()

    app = FastAPI(title="dex-monitor", lifespan=lifespan)
    app.state.monitor = monitor

    @app.post("/")
    @app.post("/events")
    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            events = parse_events(dict(request.headers), body)
        except EventsError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            new = await asyncio.to_thread(monitor.add, events)
        except ModelUnavailableError as exc:
            log.warning(logs.kv("events not stored", count=len(events), error=str(exc)))
            # 503 as for storage: the sender spools the batch and retries.
            return JSONResponse(
                {"error": f"events not stored: {exc}", "reason": "model"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        except StorageError as exc:
            monitor.c_storage_errors.inc()
            log.error(logs.kv("events not stored", count=len(events), error=str(exc)))
            # 503: the sender keeps the batch (spool) and retries; reads keep working.
            return JSONResponse(
                {"error": f"events not stored: {exc}", "reason": "storage"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        return JSONResponse({"accepted": len(events), "new": new})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, Any]:
        # Ready once the store is open; the model is reported, not required (see Monitor).
        try:
            resolved = await asyncio.to_thread(lambda: monitor.model)
        except ModelUnavailableError as exc:
            return {"ready": True, "model": monitor.ref.name, "version": None, "detail": str(exc)}
        return {"ready": True, "model": resolved.name, "version": resolved.version}

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(monitor.metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/events/count")
    async def count() -> dict[str, int]:
        return await asyncio.to_thread(monitor.store.counts)

    @app.get("/drift")
    async def latest() -> list[dict[str, Any]]:
        return [r.model_dump() for r in monitor.latest.values()]

    @app.post("/drift/compute")
    async def compute() -> list[dict[str, Any]]:
        return [r.model_dump() for r in await monitor.compute(force=True)]

    @app.get("/report", response_model=None)
    async def report() -> Response:
        if not settings.report_path.exists():
            return JSONResponse({"error": "no drift report yet"}, status_code=404)
        return FileResponse(settings.report_path, media_type="text/html")

    return app


def serve(settings: MonitorSettings) -> None:
    import uvicorn

    registry.configure_mlflow(settings.tracking_uri, settings.registry_uri)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.http_port,
        timeout_keep_alive=settings.timeout_keep_alive,
        access_log=False,
        log_config=None,
    )
