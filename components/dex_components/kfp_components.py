"""The KFP v2 components. Each is a thin ``@dsl.component`` that turns artifacts into
paths and calls the step logic in :mod:`dex_components.steps`.

KFP ships each function's *source* to the executor, so every import sits inside the body
and this module must not use ``from __future__ import annotations`` (KFP reads the real
annotations). The component image already holds DEX and KFP, hence
``install_kfp_package=False``: no pip install at task start, here or in a cluster.
Multi-value outputs use inline ``NamedTuple`` return types, the form KFP documents; mypy
cannot type those, hence the targeted ignores.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Output

from dex_components import COMPONENT_IMAGE

component = dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)


@component
def validate_data(
    entity_source: str,
    entity_key: str,
    timestamp_column: str,
    label: str,
    label_values_json: str,
    ranges_json: str,
    task: str,
    gate_metric: str,
    entity_key_type: str,
    entities: Output[Dataset],
    quality_report: Output[Markdown],
) -> str:
    """Schema and quality checks; fails naming every broken column and rule.

    Returns the run's task and entity key type (JSON), inferred or checked here.
    """
    import json

    from dex_components import steps

    summary = steps.validate_data(
        entity_source=entity_source,
        entity_key=entity_key,
        timestamp_column=timestamp_column,
        label=label,
        label_values=json.loads(label_values_json) if label_values_json else None,
        ranges=json.loads(ranges_json) if ranges_json else None,
        entities_path=entities.path,
        report_path=quality_report.path,
        task=task,
        gate_metric=gate_metric,
        entity_key_type=entity_key_type,
    )
    return json.dumps({"task": summary["task"], "entity_key_type": summary["entity_key_type"]})


@component
def build_training_set(
    entities: Input[Dataset],
    feature_repo: str,
    feature_service: str,
    entity_key: str,
    timestamp_column: str,
    label: str,
    max_missing_fraction: float,
    validated_json: str,
    categorical_json: str,
    training_set: Output[Dataset],
    reconciliation: Output[Metrics],
) -> str:
    """Point-in-time features from a Feast feature service, reconciled against the entities.

    Returns the feature contract (JSON) every later step trains, scores and registers by.
    """
    import json

    from dex_components import steps

    validated = json.loads(validated_json)
    contract, counts = steps.build_training_set(
        entities_path=entities.path,
        feature_repo=feature_repo,
        feature_service=feature_service,
        entity_key=entity_key,
        timestamp_column=timestamp_column,
        label=label,
        max_missing_fraction=max_missing_fraction,
        output_path=training_set.path,
        task=validated["task"],
        entity_key_type=validated["entity_key_type"],
        categorical_features=json.loads(categorical_json) if categorical_json else [],
    )
    for name, value in counts.items():
        reconciliation.log_metric(name, value)
    return contract.model_dump_json()


@component
def time_split(
    training_set: Input[Dataset],
    timestamp_column: str,
    test_fraction: float,
    train: Output[Dataset],
    test: Output[Dataset],
) -> None:
    """Newest rows become the holdout."""
    from dex_components import steps

    steps.split(
        input_path=training_set.path,
        timestamp_column=timestamp_column,
        test_fraction=test_fraction,
        train_path=train.path,
        test_path=test.path,
    )


@component
def tune(
    train: Input[Dataset],
    contract_json: str,
    n_trials: int,
    timeout_s: float,
    experiment: str,
    seed: int,
) -> NamedTuple("Outputs", [("best_params_json", str), ("parent_run_id", str)]):  # type: ignore[valid-type]
    """Optuna study; each trial an MLflow nested run."""
    import json
    from collections import namedtuple

    from dex.contract import FeatureContract
    from dex_components import steps

    params, parent_run_id = steps.tune(
        train_path=train.path,
        contract=FeatureContract.model_validate_json(contract_json),
        n_trials=n_trials,
        timeout_s=timeout_s,
        experiment=experiment,
        seed=seed,
    )
    outputs = namedtuple("outputs", ["best_params_json", "parent_run_id"])
    return outputs(json.dumps(params), parent_run_id)


@component
def train_model(
    train: Input[Dataset],
    contract_json: str,
    best_params_json: str,
    parent_run_id: str,
    experiment: str,
    seed: int,
) -> NamedTuple("Outputs", [("run_id", str), ("model_uri", str), ("contract_json", str)]):  # type: ignore[valid-type]
    """Fit the final model; log it with signature, example, pinned requirements, contract."""
    import json
    from collections import namedtuple

    from dex.contract import FeatureContract
    from dex_components import steps

    trained = steps.train(
        train_path=train.path,
        params=json.loads(best_params_json),
        parent_run_id=parent_run_id,
        contract=FeatureContract.model_validate_json(contract_json),
        experiment=experiment,
        seed=seed,
    )
    outputs = namedtuple("outputs", ["run_id", "model_uri", "contract_json"])
    return outputs(trained.run_id, trained.model_uri, trained.contract.model_dump_json())


@component
def evaluate_model(
    model_uri: str,
    run_id: str,
    train: Input[Dataset],
    test: Input[Dataset],
    contract_json: str,
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    drift_report: Output[HTML],
) -> float:
    """Holdout metrics for the task (classifiers: confusion matrix, binary: ROC too) and an
    Evidently drift report; returns the drift share."""
    import math

    from dex.contract import FeatureContract
    from dex_components import steps

    contract = FeatureContract.model_validate_json(contract_json)
    values, payload, drift_share = steps.evaluate(
        model_uri=model_uri,
        reference_path=train.path,
        test_path=test.path,
        contract=contract,
        drift_report_path=drift_report.path,
        run_id=run_id,
    )
    for name, value in values.items():
        if math.isfinite(value):  # e.g. one-vs-rest AUC is undefined when a class is absent
            metrics.log_metric(name, value)
    if payload["classes"]:
        classification.log_confusion_matrix(payload["classes"], payload["confusion_matrix"])
    if payload["roc_fpr"]:
        classification.log_roc_curve(
            payload["roc_fpr"], payload["roc_tpr"], payload["roc_thresholds"]
        )
    return drift_share


@component
def register_and_promote(
    run_id: str,
    model_uri: str,
    test: Input[Dataset],
    contract_json: str,
    registered_model: str,
    gate_metric: str,
    min_score: float,
    promotion_margin: float,
    max_drift_share: float,
    drift_share: float,
    decision_report: Output[Markdown],
) -> NamedTuple("Outputs", [("version", str), ("decision", str)]):  # type: ignore[valid-type]
    """Register the version; alias champion if it passes the gates and beats the champion."""
    from collections import namedtuple

    from dex.contract import FeatureContract
    from dex_components import steps

    version, decision = steps.register_and_promote(
        run_id=run_id,
        model_uri=model_uri,
        test_path=test.path,
        registered_model=registered_model,
        contract=FeatureContract.model_validate_json(contract_json),
        gates={
            "metric": gate_metric,
            "min_value": min_score,
            "margin": promotion_margin,
            "max_drift_share": max_drift_share,
        },
        drift_share=drift_share,
        decision_report_path=decision_report.path,
    )
    outputs = namedtuple("outputs", ["version", "decision"])
    return outputs(version, decision)


@component
def evaluate_registered(
    registered_model: str,
    version_or_alias: str,
    data: Input[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    drift_report: Output[HTML],
) -> str:
    """Score a registered version on fresh data against its training reference."""
    import math

    from dex_components import steps

    version, values, payload = steps.evaluate_registered(
        registered_model=registered_model,
        version_or_alias=version_or_alias,
        data_path=data.path,
        drift_report_path=drift_report.path,
    )
    for name, value in values.items():
        if math.isfinite(value):  # e.g. one-vs-rest AUC is undefined when a class is absent
            metrics.log_metric(name, value)
    if payload["classes"]:
        classification.log_confusion_matrix(payload["classes"], payload["confusion_matrix"])
    if payload["roc_fpr"]:
        classification.log_roc_curve(
            payload["roc_fpr"], payload["roc_tpr"], payload["roc_thresholds"]
        )
    return version


@component
def promote_challenger(
    registered_model: str,
    data: Input[Dataset],
    gate_metric: str,
    min_score: float,
    promotion_margin: float,
    decision_report: Output[Markdown],
) -> NamedTuple("Outputs", [("version", str), ("decision", str)]):  # type: ignore[valid-type]
    """Champion vs challenger on the same fresh data; move the champion alias on a win."""
    from collections import namedtuple

    from dex_components import steps

    version, decision = steps.promote_challenger(
        registered_model=registered_model,
        data_path=data.path,
        gates={"metric": gate_metric, "min_value": min_score, "margin": promotion_margin},
        decision_report_path=decision_report.path,
    )
    outputs = namedtuple("outputs", ["version", "decision"])
    return outputs(version, decision)
