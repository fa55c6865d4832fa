"""Online features for the transformer, fetched exactly as the feature contract says."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from typeguard import suppress_type_checks

from dex.contract import FeatureContract
from dex.features import feature_refs
from dex_serving import logs
from dex_serving.payloads import EntityBatch, PayloadError

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger("dex.serving.features")


class ContractMismatchError(RuntimeError):
    """The online feature service is not what the model was trained on."""


def contract_difference(contract_refs: list[str], online_refs: list[str]) -> str | None:
    if contract_refs == online_refs:
        return None
    missing = [r for r in contract_refs if r not in online_refs]
    extra = [r for r in online_refs if r not in contract_refs]
    parts = []
    if missing:
        parts.append(f"missing online: {missing}")
    if extra:
        parts.append(f"not in the contract: {extra}")
    if not parts:
        parts.append(f"same features in a different order: online {online_refs}")
    return "; ".join(parts)


class OnlineFeatures:
    """Feast online reads for one model version's contract."""

    def __init__(self, store: FeatureStore, contract: FeatureContract) -> None:
        self.contract = contract
        self.store = store
        self._check_service()
        self.request_fields = self._request_fields()
        self.columns = list(contract.feature_columns) or [
            r.split(":", 1)[1] for r in contract.feature_refs
        ]
        self.full_names = all("__" in c for c in self.columns)
        self.categorical = set(contract.categorical_features)
        # Features whose absence means "unknown entity" rather than "value missing": the ones
        # stored per entity (not computed on demand from the request).
        odfv_names = {v.name for v in self.store.list_on_demand_feature_views()}
        self.stored_columns = [
            self._column(ref)
            for ref in contract.feature_refs
            if ref.split(":")[0] not in odfv_names
        ]
        unknown = [
            c for c in self.columns if c not in {self._column(r) for r in contract.feature_refs}
        ]
        if unknown:
            raise ContractMismatchError(
                f"contract columns {unknown} are not among its feature refs"
            )

    def _column(self, ref: str) -> str:
        view, name = ref.split(":", 1)
        return f"{view}__{name}" if self.full_names else name

    def _check_service(self) -> None:
        name = self.contract.feature_service
        try:
            online = feature_refs(self.store, name)
        except Exception as exc:  # Feast raises its own *NotFound types per registry backend.
            raise ContractMismatchError(
                f"feature service '{name}' is not in the online registry: {exc}"
            ) from exc
        difference = contract_difference(self.contract.feature_refs, online)
        if difference:
            raise ContractMismatchError(
                f"feature service '{name}' differs from the model's feature contract: {difference}"
            )

    def _request_fields(self) -> list[str]:
        views = {ref.split(":")[0] for ref in self.contract.feature_refs}
        fields: list[str] = []
        for odfv in self.store.list_on_demand_feature_views():
            if odfv.name not in views:
                continue
            for source in odfv.source_request_sources.values():
                fields.extend(f.name for f in source.schema if f.name not in fields)
        return fields

    def fetch(self, batch: EntityBatch) -> dict[str, list[Any]]:
        """Feature values per column, in contract column order: numbers as floats, a
        categorical feature's raw values as they are. Unknown entities are the client's error.
        """
        key = self.contract.entity_key
        rows = batch.entity_rows(key)
        # Feast decorates its on-demand feature views with typeguard's @typechecked, which
        # re-checks Feast's own argument and return types on every read: 0.06-0.1 ms of a
        # 0.45 ms one-entity read, measured. The values are checked below, against the
        # contract; Feast's internal annotations are its developers' concern, not a request's.
        with suppress_type_checks():
            online = self.store.get_online_features(
                features=self.contract.feature_refs,
                entity_rows=rows,
                full_feature_names=self.full_names,
            ).to_dict()
        unknown = [
            k
            for i, k in enumerate(batch.keys)
            if all(online[c][i] is None for c in self.stored_columns)
        ]
        if unknown:
            raise PayloadError(f"unknown {key} {unknown[:10]}: no online features")
        columns: dict[str, list[Any]] = {}
        for column in self.columns:
            values = online[column]
            missing = [batch.keys[i] for i, v in enumerate(values) if v is None]
            if missing:
                raise PayloadError(f"{key} {missing[:10]}: no online value for feature '{column}'")
            if column in self.categorical:
                columns[column] = list(values)
            else:
                columns[column] = [float(v) for v in values]
        return columns

    def warm_up(self) -> None:
        """The first read loads the registry and opens the store; pay that before 'ready'."""
        key: int | str = "dex-warm-up" if self.contract.entity_key_type == "str" else 0
        batch = EntityBatch(keys=[key], request_values={f: [0.0] for f in self.request_fields})
        try:
            self.fetch(batch)
        except PayloadError as exc:
            log.info(logs.kv("warm-up read", result=str(exc)))
