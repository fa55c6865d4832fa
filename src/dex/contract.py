"""The feature contract: what a registered model version was trained on.

Training writes it as MLflow model-version tags; serving and monitoring read it back, so
the transformer fetches exactly the features the model learned from, in the same order.
Tag names are namespaced ``dex.`` like Kubernetes annotations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field

Task = Literal["binary", "multiclass", "regression"]
TaskSetting = Literal["auto", "binary", "multiclass", "regression"]


TAG_FEATURE_SERVICE = "dex.feature_service"
TAG_FEATURE_REFS = "dex.feature_refs"
TAG_FEATURE_COLUMNS = "dex.feature_columns"
TAG_ENTITY_KEY = "dex.entity_key"
TAG_LABEL = "dex.label"
TAG_TIMESTAMP = "dex.timestamp_column"
TAG_REFERENCE_DATA = "dex.reference_data"
TAG_TASK = "dex.task"
TAG_CATEGORICAL = "dex.categorical_features"
TAG_ENTITY_KEY_TYPE = "dex.entity_key_type"

EntityKeyType = Literal["int", "str"]


class FeatureContract(BaseModel):
    """Feature service, the exact feature references, and the column order the model expects."""

    feature_service: str = Field(description="Feast FeatureService the model was trained on.")
    feature_refs: list[str] = Field(
        description="Feast references, 'view:feature', in service order."
    )
    feature_columns: list[str] = Field(description="Model input columns, in signature order.")
    entity_key: str = Field(description="Entity join key, e.g. customer_id.")
    label: str = Field(description="Label column used in training.")
    timestamp_column: str = Field(default="event_timestamp")
    reference_data: str | None = Field(
        default=None,
        description="Run-relative artifact path of the training reference frame (drift baseline).",
    )
    # Versions registered before these tags existed were binary, integer-keyed, all-numeric.
    task: Task = Field(default="binary", description="binary, multiclass or regression.")
    categorical_features: list[str] = Field(
        default_factory=list,
        description="Feature columns the model encodes as categories (raw values on the wire).",
    )
    entity_key_type: EntityKeyType = Field(
        default="int", description="Type of the entity key's values: int or str."
    )

    def to_tags(self) -> dict[str, str]:
        tags = {
            TAG_FEATURE_SERVICE: self.feature_service,
            TAG_FEATURE_REFS: json.dumps(self.feature_refs),
            TAG_FEATURE_COLUMNS: json.dumps(self.feature_columns),
            TAG_ENTITY_KEY: self.entity_key,
            TAG_LABEL: self.label,
            TAG_TIMESTAMP: self.timestamp_column,
            TAG_TASK: self.task,
            TAG_CATEGORICAL: json.dumps(self.categorical_features),
            TAG_ENTITY_KEY_TYPE: self.entity_key_type,
        }
        if self.reference_data:
            tags[TAG_REFERENCE_DATA] = self.reference_data
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> FeatureContract:
        missing = [
            t for t in (TAG_FEATURE_SERVICE, TAG_FEATURE_REFS, TAG_ENTITY_KEY) if t not in tags
        ]
        if missing:
            raise ValueError(f"model version has no feature contract: missing tags {missing}")
        return cls(
            feature_service=tags[TAG_FEATURE_SERVICE],
            feature_refs=json.loads(tags[TAG_FEATURE_REFS]),
            feature_columns=json.loads(tags.get(TAG_FEATURE_COLUMNS, "[]")),
            entity_key=tags[TAG_ENTITY_KEY],
            label=tags.get(TAG_LABEL, ""),
            timestamp_column=tags.get(TAG_TIMESTAMP, "event_timestamp"),
            reference_data=tags.get(TAG_REFERENCE_DATA),
            task=tags.get(TAG_TASK, "binary"),
            categorical_features=json.loads(tags.get(TAG_CATEGORICAL, "[]")),
            entity_key_type=tags.get(TAG_ENTITY_KEY_TYPE, "int"),
        )
