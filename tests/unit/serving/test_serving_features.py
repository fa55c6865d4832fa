"""The online read: Feast's own runtime type checks stay out of the request path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from typeguard import TypeCheckError, typechecked

from dex.contract import FeatureContract
from dex_serving.features import OnlineFeatures
from dex_serving.payloads import EntityBatch


@typechecked
def _feast_internal(values: dict[str, list[float]]) -> int:
    """Annotated as Feast annotates its on-demand feature views: checked on every call."""
    return len(values)


@dataclass
class _Feature:
    name: str


@dataclass
class _Projection:
    view: str
    features: list[_Feature]

    def name_to_use(self) -> str:
        return self.view


@dataclass
class _Service:
    feature_view_projections: list[_Projection]


@dataclass
class _Response:
    values: dict[str, list[Any]]

    def to_dict(self) -> dict[str, list[Any]]:
        return self.values


@dataclass
class _Store:
    """The FeatureStore calls OnlineFeatures makes; the read calls a @typechecked function
    with a value its annotation refuses, as a type-checked Feast internal would see it."""

    reads: list[int] = field(default_factory=list)

    def get_feature_service(self, name: str) -> _Service:
        return _Service([_Projection("profile", [_Feature("age"), _Feature("spend")])])

    def list_on_demand_feature_views(self) -> list[Any]:
        return []

    def get_online_features(
        self, features: list[str], entity_rows: list[dict[str, Any]], full_feature_names: bool
    ) -> _Response:
        self.reads.append(_feast_internal({"age": "not a list"}))  # type: ignore[dict-item]
        n = len(entity_rows)
        return _Response({"customer_id": [r["customer_id"] for r in entity_rows],
                          "age": [41.0] * n, "spend": [12.5] * n})  # fmt: skip


def test_the_read_runs_feasts_annotations_unchecked_and_checks_the_values_itself() -> None:
    with pytest.raises(TypeCheckError):  # the checks are on outside the read
        _feast_internal({"age": "not a list"})  # type: ignore[dict-item]
    contract = FeatureContract(
        feature_service="churn_v1",
        feature_refs=["profile:age", "profile:spend"],
        feature_columns=["spend", "age"],
        entity_key="customer_id",
        label="churned",
    )
    store = _Store()
    features = OnlineFeatures(store, contract)  # type: ignore[arg-type]

    got = features.fetch(EntityBatch(keys=[7, 8], request_values={}))

    assert store.reads == [1]
    assert got == {"spend": [12.5, 12.5], "age": [41.0, 41.0]}
    with pytest.raises(TypeCheckError):  # and on again after it
        _feast_internal({"age": "not a list"})  # type: ignore[dict-item]
