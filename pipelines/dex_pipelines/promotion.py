"""The promotion pipeline: champion vs challenger on the same fresh data."""

from kfp import dsl

from dex_components import kfp_components as c
from dex_pipelines.shared import validated_features
from dex_pipelines.training import IMAGE_FEATURE_REPO


@dsl.pipeline(
    name="dex-promotion",
    description="Compare challenger with champion on fresh data; move the champion alias on a win.",
)
def promotion_pipeline(
    entity_source: str,
    feature_repo: str = IMAGE_FEATURE_REPO,
    feature_service: str = "churn_v1",
    entity_key: str = "customer_id",
    timestamp_column: str = "event_timestamp",
    label: str = "churned",
    task: str = "auto",
    entity_key_type: str = "auto",
    categorical_json: str = "",
    registered_model: str = "churn-classifier",
    gate_metric: str = "",
    min_score: float = 0.65,
    promotion_margin: float = 0.0,
    max_missing_fraction: float = 0.02,
) -> None:
    features = validated_features(
        entity_source=entity_source,
        feature_repo=feature_repo,
        feature_service=feature_service,
        entity_key=entity_key,
        timestamp_column=timestamp_column,
        label=label,
        max_missing_fraction=max_missing_fraction,
        task=task,
        entity_key_type=entity_key_type,
        categorical_json=categorical_json,
        features_display_name="build-holdout",
    )
    c.promote_challenger(
        registered_model=registered_model,
        data=features.outputs["training_set"],
        gate_metric=gate_metric,
        min_score=min_score,
        promotion_margin=promotion_margin,
    ).set_display_name("promote").set_caching_options(
        False  # reads the registry's champion now, not at an earlier run's time
    )
