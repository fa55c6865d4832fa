"""The training pipeline: validate -> features -> split -> tune -> train -> evaluate ->
register + promote. No column or service name is fixed: they are parameters, so the same
pipeline trains on any Feast feature service."""

from kfp import dsl

from dex_components import kfp_components as c
from dex_pipelines.shared import validated_features

# Where the component image keeps the Feast repo; local runs pass their checkout's path.
IMAGE_FEATURE_REPO = "/opt/dex/feature_repo"


@dsl.pipeline(
    name="dex-training",
    description="Feast features -> Optuna-tuned model -> MLflow registry, gated promotion.",
)
def training_pipeline(
    entity_source: str,
    feature_repo: str = IMAGE_FEATURE_REPO,
    feature_service: str = "churn_v1",
    entity_key: str = "customer_id",
    timestamp_column: str = "event_timestamp",
    label: str = "churned",
    task: str = "auto",
    entity_key_type: str = "auto",
    categorical_json: str = "",
    label_values_json: str = "",
    ranges_json: str = "",
    registered_model: str = "churn-classifier",
    experiment: str = "dex-churn",
    n_trials: int = 20,
    tune_timeout_s: float = 120.0,
    test_fraction: float = 0.2,
    max_missing_fraction: float = 0.02,
    gate_metric: str = "",
    min_score: float = 0.65,
    promotion_margin: float = 0.0,
    max_drift_share: float = 1.0,
    seed: int = 42,
) -> None:
    features = validated_features(
        entity_source=entity_source,
        feature_repo=feature_repo,
        feature_service=feature_service,
        entity_key=entity_key,
        timestamp_column=timestamp_column,
        label=label,
        max_missing_fraction=max_missing_fraction,
        label_values_json=label_values_json,
        ranges_json=ranges_json,
        task=task,
        gate_metric=gate_metric,
        entity_key_type=entity_key_type,
        categorical_json=categorical_json,
    )
    split = c.time_split(
        training_set=features.outputs["training_set"],
        timestamp_column=timestamp_column,
        test_fraction=test_fraction,
    ).set_display_name("time-split")
    contract = features.outputs["Output"]
    tuned = c.tune(
        train=split.outputs["train"],
        contract_json=contract,
        n_trials=n_trials,
        timeout_s=tune_timeout_s,
        experiment=experiment,
        seed=seed,
    ).set_display_name("tune")
    trained = c.train_model(
        train=split.outputs["train"],
        contract_json=contract,
        best_params_json=tuned.outputs["best_params_json"],
        parent_run_id=tuned.outputs["parent_run_id"],
        experiment=experiment,
        seed=seed,
    ).set_display_name("train")
    evaluated = c.evaluate_model(
        model_uri=trained.outputs["model_uri"],
        run_id=trained.outputs["run_id"],
        train=split.outputs["train"],
        test=split.outputs["test"],
        contract_json=contract,
    ).set_display_name("evaluate")
    c.register_and_promote(
        run_id=trained.outputs["run_id"],
        model_uri=trained.outputs["model_uri"],
        test=split.outputs["test"],
        contract_json=trained.outputs["contract_json"],
        registered_model=registered_model,
        gate_metric=gate_metric,
        min_score=min_score,
        promotion_margin=promotion_margin,
        max_drift_share=max_drift_share,
        drift_share=evaluated.outputs["Output"],
    ).set_display_name("register-and-promote").set_caching_options(
        False  # reads the registry's champion now, not at an earlier run's time
    )
