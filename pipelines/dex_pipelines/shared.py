"""Steps every DEX pipeline starts with: validate the entity frame, then join features."""

from typing import Any

from dex_components import kfp_components as c


def validated_features(
    *,
    entity_source: Any,
    feature_repo: Any,
    feature_service: Any,
    entity_key: Any,
    timestamp_column: Any,
    label: Any,
    max_missing_fraction: Any,
    label_values_json: Any = "",
    ranges_json: Any = "",
    task: Any = "auto",
    gate_metric: Any = "",
    entity_key_type: Any = "auto",
    categorical_json: Any = "",
    features_display_name: str = "build-training-set",
) -> Any:
    """Add validate + build-training-set to the pipeline being defined; returns the latter.

    Arguments are pipeline parameters (placeholders) or constants, hence ``Any``. Neither
    step is ever served from KFP's cache: its inputs name data (a URI, a feature service),
    not its content, so a run on new data would otherwise reuse the old data's outputs —
    and every step after them, whose inputs are their artifacts.
    """
    validated = c.validate_data(
        entity_source=entity_source,
        entity_key=entity_key,
        timestamp_column=timestamp_column,
        label=label,
        label_values_json=label_values_json,
        ranges_json=ranges_json,
        task=task,
        gate_metric=gate_metric,
        entity_key_type=entity_key_type,
    ).set_display_name("validate")
    validated.set_caching_options(False)
    features = c.build_training_set(
        entities=validated.outputs["entities"],
        feature_repo=feature_repo,
        feature_service=feature_service,
        entity_key=entity_key,
        timestamp_column=timestamp_column,
        label=label,
        max_missing_fraction=max_missing_fraction,
        validated_json=validated.outputs["Output"],
        categorical_json=categorical_json,
    ).set_display_name(features_display_name)
    features.set_caching_options(False)
    return features
