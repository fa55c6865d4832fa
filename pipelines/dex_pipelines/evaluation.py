"""The evaluation pipeline: score a registered version on fresh data (metrics + drift)."""

from kfp import dsl

from dex_components import kfp_components as c
from dex_pipelines.shared import validated_features
from dex_pipelines.training import IMAGE_FEATURE_REPO


@dsl.pipeline(
    name="dex-evaluation",
    description="Score a registered model version (or alias) on fresh labelled data.",
)
def evaluation_pipeline(
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
    version_or_alias: str = "champion",
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
        features_display_name="build-evaluation-set",
    )
    c.evaluate_registered(
        registered_model=registered_model,
        version_or_alias=version_or_alias,
        data=features.outputs["training_set"],
    ).set_display_name("evaluate").set_caching_options(
        False  # reads the version the alias names now, not at an earlier run's time
    )
