"""The transformer: entity keys in, predictions out, features from Feast in between.

Takes ``{"instances": [{"customer_id": 7}, ...]}`` (V1) or an ``customer_id`` INT64 tensor (V2),
plus any request-time fields the contract's on-demand features need; reads exactly the
contract's features from the Feast online store; orders them as the model was trained; calls
the predictor; answers labels and the positive-class probability per entity.

    python -m dex_serving.run transformer --model models:/churn-classifier@champion \
        --feature-repo feature_repo --predictor-host 127.0.0.1:8080 --port 8081
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from kserve import InferInput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from dex import registry
from dex.contract import FeatureContract
from dex_serving import eventlog, logs, payloads, v2
from dex_serving.features import OnlineFeatures
from dex_serving.settings import TransformerSettings

log = logging.getLogger("dex.serving.transformer")


@dataclass
class Prepared:
    """What preprocess hands to predict: never sent on the wire as is."""

    v2_client: bool
    request_id: str | None
    keys: list[int]
    features: payloads.Matrix


@dataclass
class Predicted:
    prepared: Prepared
    instances: list[dict[str, float]]
    labels: np.ndarray
    probabilities: np.ndarray | None
    version: str | None


class DexTransformer(Model):  # type: ignore[misc]
    def __init__(self, settings: TransformerSettings) -> None:
        self.settings = settings
        self.ref = registry.ModelRef.parse(settings.model)
        if not self.ref.name:
            raise ValueError("the transformer needs a registered model (for its feature contract)")
        super().__init__(settings.served_name or self.ref.name)
        self.resolved: registry.ResolvedModel | None = None
        self.features: OnlineFeatures | None = None
        self.events: eventlog.InferenceLogger | None = None

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> bool:
        resolved = registry.resolve(self.ref)
        if resolved.contract is None:
            raise ValueError(f"{resolved.uri} has no feature contract (dex.* tags)")
        self.resolved = resolved
        self.features = OnlineFeatures(self.settings.feature_repo, resolved.contract)
        self.features.warm_up(0)
        if self.settings.monitor_url:
            self.events = eventlog.InferenceLogger(
                self.settings.monitor_url,
                capacity=self.settings.log_buffer,
                batch_size=self.settings.log_batch,
            )
        self.ready = True
        log.info(
            logs.kv(
                "transformer ready",
                model=resolved.name,
                version=resolved.version,
                feature_service=resolved.contract.feature_service,
                request_fields=",".join(self.features.request_fields) or "-",
                predictor=self.settings.predictor_host,
                monitor=self.settings.monitor_url or "-",
            )
        )
        return bool(self.ready)

    def stop(self) -> None:
        if self.events is not None:
            self.events.close()

    @property
    def contract(self) -> FeatureContract:
        if self.resolved is None or self.resolved.contract is None:
            raise InvalidInput("transformer is not loaded")
        return self.resolved.contract

    def _features(self) -> OnlineFeatures:
        if self.features is None:
            raise InvalidInput("transformer is not loaded")
        return self.features

    # ------------------------------------------------------------------ request path

    def validate(self, payload: Any) -> Any:
        # preprocess already validated; Prepared is not a wire payload kserve could check.
        return payload

    async def preprocess(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> Prepared:
        features = self._features()
        fields = features.request_fields
        key = self.contract.entity_key
        try:
            if isinstance(payload, InferRequest):
                batch = payloads.v2_entities(
                    v2.tensors_of(payload), key, fields, self.settings.max_batch
                )
                request_id = payload.id
            else:
                batch = payloads.v1_entities(payload, key, fields, self.settings.max_batch)
                request_id = (headers or {}).get("x-request-id")
            # Inline, not in a thread: the read is ~0.3 ms of mostly Python (GIL-bound) work
            # plus the on-demand transform; a thread hop would add latency and no parallelism.
            matrix = features.fetch(batch)
        except payloads.PayloadError as exc:
            raise v2.invalid(exc) from exc
        return Prepared(
            v2_client=isinstance(payload, InferRequest),
            request_id=request_id,
            keys=batch.keys,
            features=matrix,
        )

    async def predict(
        self,
        payload: Prepared,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Predicted:
        columns = self._features().columns
        instances = [dict(zip(columns, row, strict=True)) for row in payload.features.tolist()]
        if self.settings.predictor_protocol == "v2":
            wire: dict[str, Any] | InferRequest = InferRequest(
                model_name=self.name,
                request_id=payload.request_id,
                infer_inputs=[
                    InferInput(
                        name=c,
                        shape=[len(instances)],
                        datatype="FP64",
                        data=payload.features[:, j].tolist(),
                    )
                    for j, c in enumerate(columns)
                ],
            )
        else:
            wire = {"instances": instances}
        try:
            result = await super().predict(wire, headers, response_headers)
        except httpx.HTTPStatusError as exc:
            if 400 <= exc.response.status_code < 500:
                raise InvalidInput(f"predictor rejected the features: {exc.response.text}") from exc
            raise
        if isinstance(result, InferResponse):
            by_name = {o.name: o.as_numpy() for o in result.outputs}
            labels = by_name["label"]
            probabilities = by_name.get("probabilities")
            version = result.model_version or (self.resolved.version if self.resolved else None)
        else:
            labels = np.asarray(result["predictions"])
            raw = result.get("probabilities")
            probabilities = None if raw is None else np.asarray(raw, dtype=np.float64)
            version = result.get("model_version")
        return Predicted(payload, instances, labels, probabilities, version)

    async def postprocess(
        self,
        result: Predicted,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        key = self.contract.entity_key
        prepared = result.prepared
        # The positive class is sklearn's last (classes_ are sorted): P(churn) for churn.
        positive = None if result.probabilities is None else result.probabilities[:, -1]
        self._log_events(result)
        if prepared.v2_client:
            outputs = [
                v2.output(key, np.asarray(prepared.keys, dtype=np.int64)),
                v2.output("label", result.labels),
            ]
            if positive is not None:
                outputs.append(v2.output("probability", positive))
            return v2.response(self.name, prepared.request_id, outputs, result.version)
        rows: list[dict[str, Any]] = []
        labels = result.labels.tolist()
        for i, entity in enumerate(prepared.keys):
            row: dict[str, Any] = {key: entity, "label": labels[i]}
            if positive is not None:
                row["probability"] = float(positive[i])
            rows.append(row)
        return {"predictions": rows, "model_name": self.name, "model_version": result.version}

    def _log_events(self, result: Predicted) -> None:
        if self.events is None:
            return
        response: dict[str, Any] = {"predictions": result.labels.tolist()}
        if result.probabilities is not None:
            response["probabilities"] = result.probabilities.tolist()
        self.events.log(
            *eventlog.inference_events(
                source=f"dex/transformer/{self.name}",
                service=self.name,
                version=result.version,
                request={"instances": result.instances},
                response=response,
            )
        )


def serve(settings: TransformerSettings) -> None:
    from dex_serving import kserve_server

    registry.configure_mlflow(settings.tracking_uri, settings.registry_uri)
    model = DexTransformer(settings)
    model.load()
    try:
        kserve_server.run(
            [model],
            host=settings.host,
            http_port=settings.http_port,
            predictor_host=settings.predictor_host,
            predictor_protocol=settings.predictor_protocol,
        )
    finally:
        model.stop()
