"""Build training set: point-in-time features from a Feast feature service.

The file offline store silently drops entity rows (and returns rows in any order), so
the result is re-joined to the entity frame by key + timestamp and every lost or
feature-less row is counted. Too many missing rows fail the step instead of training on
a quietly shrunken, biased sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from pydantic import BaseModel

from dex_components.errors import StepError

if TYPE_CHECKING:
    from feast import FeatureStore


class Reconciliation(BaseModel):
    entity_rows: int
    returned_rows: int
    dropped_by_store: int
    rows_missing_features: int
    kept_rows: int
    missing_fraction: float


class TrainingSet(BaseModel):
    feature_service: str
    feature_refs: list[str]
    feature_columns: list[str]
    reconciliation: Reconciliation


def build_training_set(
    store: FeatureStore,
    entity_frame: pd.DataFrame,
    *,
    feature_service: str,
    entity_key: str,
    timestamp_column: str,
    label: str | None,
    max_missing_fraction: float,
) -> tuple[pd.DataFrame, TrainingSet]:
    from dex.features import feature_refs as service_refs

    refs = service_refs(store, feature_service)  # ValueError names known services
    columns = [ref.split(":", 1)[1] for ref in refs]
    keys = [entity_key, timestamp_column]
    entity_df = entity_frame[keys].copy()
    entity_df[timestamp_column] = pd.to_datetime(entity_df[timestamp_column], utc=True)

    job = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(feature_service)
    )
    features = job.to_df()
    features[timestamp_column] = pd.to_datetime(features[timestamp_column], utc=True)
    missing_cols = [c for c in columns if c not in features.columns]
    if missing_cols:
        raise StepError(f"feature service {feature_service!r} returned no columns {missing_cols}")

    # Only key, time and label: an entity file that also holds the feature columns (one file
    # for both, as `dexctl init` sets up) must not shadow what Feast returns.
    base = entity_frame[[*keys, *([label] if label else [])]].copy()
    base[timestamp_column] = pd.to_datetime(base[timestamp_column], utc=True)
    joined = base.merge(
        features[[*keys, *columns]], on=keys, how="left", indicator=True, validate="one_to_one"
    )
    dropped = int((joined["_merge"] == "left_only").sum())
    joined = joined.drop(columns="_merge")
    incomplete = joined[columns].isna().any(axis=1)
    missing = int(incomplete.sum())
    total = len(entity_frame)
    fraction = missing / total if total else 1.0
    reconciliation = Reconciliation(
        entity_rows=total,
        returned_rows=len(features),
        dropped_by_store=dropped,
        rows_missing_features=missing,
        kept_rows=total - missing,
        missing_fraction=round(fraction, 6),
    )
    if fraction > max_missing_fraction:
        raise StepError(
            f"{missing} of {total} entity rows ({fraction:.1%}) have no features from "
            f"{feature_service!r} ({dropped} dropped by the offline store); "
            f"the limit is {max_missing_fraction:.1%}"
        )
    result = joined.loc[~incomplete].sort_values(keys, kind="stable").reset_index(drop=True)
    keep = [*keys, *([label] if label else []), *columns]
    return result[keep], TrainingSet(
        feature_service=feature_service,
        feature_refs=refs,
        feature_columns=columns,
        reconciliation=reconciliation,
    )
