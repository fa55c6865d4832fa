"""The transformer: entity keys in, predictions out, features from Feast in between.

Takes ``{"instances": [{"customer_id": 7}, ...]}`` (V1) or an ``customer_id`` INT64 tensor (V2),
plus any request-time fields the contract's on-demand features need; reads exactly the
contract's features from the Feast online store; orders them as the model was trained; calls
the predictor; answers labels and the positive-class probability per entity.

    python -m dex_serving.run transformer --model models:/churn-classifier@champion \
        --feature-repo feature_repo --predictor-host 127.0.0.1:8080 --port 8081

Without ``--predictor-host`` it loads the model itself and predicts in process (the predictor's
``LoadedModel``): the same request and answer, one hop and one server fewer. That is what a
DexModel with ``spec.features.component: predictor`` runs as its KServe predictor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
from kserve import InferInput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from dex import registry
from dex.contract import FeatureContract
from dex.features import open_remote_store
from dex_serving import eventlog, logs, payloads, v2
from dex_serving.features import ContractMismatchError, OnlineFeatures
from dex_serving.predictor import LoadedModel, plain
from dex_serving.settings import TransformerSettings
from dex_serving.spool import Spool

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger("dex.serving.transformer")


@dataclass
class Prepared:
    """What preprocess hands to predict: never sent on the wire as is."""

    v2_client: bool
    request_id: str | None
    keys: list[payloads.EntityKey]
    features: dict[str, list[Any]]


@dataclass
class Predicted:
    prepared: Prepared
    instances: list[dict[str, Any]]
    labels: np.ndarray
    probabilities: np.ndarray | None
    version: str | None
    classes: list[Any] | None = None


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
        # The model, when this process predicts itself (no predictor host).
        self.local: LoadedModel | None = None

    # ------------------------------------------------------------------ lifecycle

    def _open_store(self) -> FeatureStore:
        settings = self.settings
        if settings.feast_registry_server and settings.feast_feature_server:
            return open_remote_store(
                settings.feature_repo, settings.feast_registry_server, settings.feast_feature_server
            )
        from feast import FeatureStore

        return FeatureStore(repo_path=str(settings.feature_repo))

    def load(self) -> bool:
        resolved = registry.resolve(self.ref)
        if resolved.contract is None:
            raise ValueError(f"{resolved.uri} has no feature contract (dex.* tags)")
        self.resolved = resolved
        self.features = OnlineFeatures(self._open_store(), resolved.contract)
        self.features.warm_up()
        if not self.settings.predictor_host:
            self.local = _load_here(resolved, self.features)
        if self.settings.monitor_url:
            spool = self.settings.event_spool
            self.events = eventlog.InferenceLogger(
                self.settings.monitor_url,
                capacity=self.settings.log_buffer,
                batch_size=self.settings.log_batch,
                linger_s=self.settings.log_linger_s,
                spool=Spool(spool, self.settings.event_spool_bytes) if spool else None,
            )
        self.ready = True
        log.info(
            logs.kv(
                "transformer ready",
                model=resolved.name,
                version=resolved.version,
                feature_service=resolved.contract.feature_service,
                request_fields=",".join(self.features.request_fields) or "-",
                predictor=self.settings.predictor_host or "in-process",
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
        key_type = self.contract.entity_key_type
        try:
            if isinstance(payload, InferRequest):
                batch = payloads.v2_entities(
                    v2.tensors_of(payload), key, fields, self.settings.max_batch, key_type
                )
                request_id = payload.id
            else:
                batch = payloads.v1_entities(
                    payload, key, fields, self.settings.max_batch, key_type
                )
                request_id = (headers or {}).get("x-request-id")
            # Inline, not in a thread: the read is ~0.3 ms of mostly Python (GIL-bound) work
            # plus the on-demand transform; a thread hop would add latency and no parallelism.
            values = features.fetch(batch)
        except payloads.PayloadError as exc:
            raise v2.invalid(exc) from exc
        return Prepared(
            v2_client=isinstance(payload, InferRequest),
            request_id=request_id,
            keys=batch.keys,
            features=values,
        )

    async def predict(
        self,
        payload: Prepared,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Predicted:
        features = self._features()
        columns = features.columns
        values = payload.features
        instances = [{c: values[c][i] for c in columns} for i in range(len(payload.keys))]
        if self.local is not None:
            return self._predict_here(self.local, payload, instances)
        if self.settings.predictor_protocol == "v2":
            wire: dict[str, Any] | InferRequest = InferRequest(
                model_name=self.name,
                request_id=payload.request_id,
                infer_inputs=[
                    InferInput(
                        name=c,
                        shape=[len(instances)],
                        # A categorical feature's text travels as BYTES, numbers as FP64.
                        datatype=(
                            "BYTES" if any(isinstance(v, str) for v in values[c]) else "FP64"
                        ),
                        data=values[c],
                    )
                    for c in columns
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
            if labels.dtype.kind in "OS":
                labels = np.asarray([_text(v) for v in labels.tolist()], dtype=object)
            probabilities = by_name.get("probabilities")
            version = result.model_version or (self.resolved.version if self.resolved else None)
            classes = None
            if "classes" in by_name:
                classes = [_text(v) for v in by_name["classes"].tolist()]
        else:
            labels = np.asarray(result["predictions"])
            raw = result.get("probabilities")
            probabilities = None if raw is None else np.asarray(raw, dtype=np.float64)
            version = result.get("model_version")
            classes = result.get("classes")
        return Predicted(payload, instances, labels, probabilities, version, classes)

    def _predict_here(
        self, model: LoadedModel, payload: Prepared, instances: list[dict[str, Any]]
    ) -> Predicted:
        # The predictor's own parsing of the same V1 instances: the numbers (and a
        # categorical feature's text) reach the estimator exactly as over the hop.
        try:
            matrix = payloads.v1_matrix(
                {"instances": instances}, model.columns, self.settings.max_batch, model.categorical
            )
        except payloads.PayloadError as exc:
            raise v2.invalid(exc) from exc
        labels, probabilities = model.predict(matrix)
        classes = None if model.classes is None else [plain(c) for c in model.classes]
        return Predicted(payload, instances, labels, probabilities, model.resolved.version, classes)

    async def postprocess(
        self,
        result: Predicted,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        contract = self.contract
        key = contract.entity_key
        prepared = result.prepared
        probabilities = result.probabilities
        # Binary: the positive class is sklearn's last (classes_ are sorted), P(churn) for
        # churn. Multiclass: one probability per class, in `classes` order.
        positive = (
            probabilities[:, -1]
            if probabilities is not None and contract.task == "binary"
            else None
        )
        per_class = probabilities if contract.task == "multiclass" else None
        self._log_events(result)
        if prepared.v2_client:
            keys = np.asarray(
                prepared.keys, dtype=object if contract.entity_key_type == "str" else np.int64
            )
            outputs = [v2.output(key, keys), v2.output("label", result.labels)]
            if positive is not None:
                outputs.append(v2.output("probability", positive))
            if per_class is not None:
                outputs.append(v2.output("probabilities", per_class))
            return v2.response(self.name, prepared.request_id, outputs, result.version)
        rows: list[dict[str, Any]] = []
        labels = result.labels.tolist()
        for i, entity in enumerate(prepared.keys):
            row: dict[str, Any] = {key: entity, "label": labels[i]}
            if positive is not None:
                row["probability"] = float(positive[i])
            if per_class is not None:
                row["probabilities"] = [float(p) for p in per_class[i]]
            rows.append(row)
        body: dict[str, Any] = {
            "predictions": rows,
            "model_name": self.name,
            "model_version": result.version,
        }
        if result.classes is not None and contract.task != "regression":
            body["classes"] = result.classes
        return body

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


def _load_here(resolved: registry.ResolvedModel, features: OnlineFeatures) -> LoadedModel:
    model = LoadedModel(resolved)
    if sorted(model.columns) != sorted(features.columns):
        # Over a hop the predictor would refuse every request; refuse to start instead.
        raise ContractMismatchError(
            f"{resolved.uri}: the model's input columns {model.columns} are not its feature "
            f"contract's columns {features.columns}"
        )
    return model


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


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
            timeout_keep_alive=settings.timeout_keep_alive,
            predictor_host=settings.predictor_host,
            predictor_protocol=settings.predictor_protocol,
        )
    finally:
        model.stop()
