"""A DexPipeline's spec checked against its package before KFP sees it."""

from __future__ import annotations

import re

import pytest
import yaml

from dex_operator import pipeline_controller, pipelines
from dex_operator.crd.models import DexPipelineSpec, PipelineRef


def training() -> bytes:
    return pipelines.load_package(PipelineRef(name="training"))


def test_shipped_package_loads_as_data_with_its_name() -> None:
    assert pipelines.pipeline_name(training()) == "dex-training"


def test_parameters_are_typed_by_the_packages_input_definitions() -> None:
    typed = pipelines.typed_parameters(
        training(),
        {"entity_source": "/d.parquet", "n_trials": "7", "min_score": "0.7", "label": "churned"},
    )
    assert typed == {
        "entity_source": "/d.parquet",
        "n_trials": 7,
        "min_score": 0.7,
        "label": "churned",
    }


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        (
            {"entity_source": "x", "n_trial": "5"},
            "spec.parameters.n_trial: not an input of dex-training",
        ),
        ({}, "spec.parameters.entity_source: required by dex-training"),
        (
            {"entity_source": "x", "min_score": "high"},
            "spec.parameters.min_score: 'high' is not a number_double",
        ),
    ],
)
def test_a_parameter_kfp_would_refuse_is_named(given: dict[str, str], needle: str) -> None:
    with pytest.raises(pipelines.PipelineSpecError, match=re.escape(needle)):
        pipelines.typed_parameters(training(), given)


def test_a_package_that_is_not_a_pipeline_is_refused() -> None:
    with pytest.raises(pipelines.PipelineSpecError, match="not a compiled KFP pipeline"):
        pipelines.typed_parameters(b"kind: ConfigMap\n", {})
    with pytest.raises(
        pipelines.PipelineSpecError, match=re.escape("spec.pipeline.package /nowhere")
    ):
        pipelines.load_package(PipelineRef(package="/nowhere/p.yaml"))


@pytest.mark.parametrize(
    ("schedule", "cron"),
    [
        ("0 3 * * *", "0 0 3 * * *"),
        ("*/15 * * * 1-5", "0 */15 * * * 1-5"),
        ("@daily", "0 0 0 * * *"),
    ],
)
def test_schedule_in_kfps_six_fields(schedule: str, cron: str) -> None:
    assert pipelines.kfp_cron(schedule) == cron


def test_schedule_digest_changes_with_what_runs_and_backoff_is_bounded() -> None:
    base = pipeline_controller.schedule_digest("v1", "0 0 3 * * *", {"n_trials": 5})
    assert base == pipeline_controller.schedule_digest("v1", "0 0 3 * * *", {"n_trials": 5})
    assert base != pipeline_controller.schedule_digest("v2", "0 0 3 * * *", {"n_trials": 5})
    assert base != pipeline_controller.schedule_digest("v1", "0 0 4 * * *", {"n_trials": 5})
    assert base != pipeline_controller.schedule_digest("v1", "0 0 3 * * *", {"n_trials": 6})
    assert [pipeline_controller.backoff(r) for r in (0, 1, 2, 10)] == [5.0, 10.0, 20.0, 300.0]


def test_spec_env_reaches_every_step_as_kfps_sdk_would_write_it() -> None:
    spec = DexPipelineSpec.model_validate(
        {
            "pipeline": {"name": "training"},
            "env": [
                {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.dex-system:5000"},
                {
                    "name": "AWS_SECRET_ACCESS_KEY",
                    "valueFrom": {"secretKeyRef": {"name": "dex-data", "key": "secretkey"}},
                },
                {
                    "name": "AWS_ENDPOINT_URL",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "dex-data", "key": "endpoint", "optional": True}
                    },
                },
            ],
        }
    )
    package = pipelines.with_env(training(), spec.env)
    ir, platform = [d for d in yaml.safe_load_all(package) if d]
    executors = ir["deploymentSpec"]["executors"]
    assert len(executors) == 7
    for name, executor in executors.items():
        assert executor["container"]["env"] == [
            {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.dex-system:5000"}
        ]
        config = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][name]
        assert config["secretAsEnv"] == [
            {
                "secretName": "dex-data",
                "keyToEnv": [{"secretKey": "secretkey", "envVar": "AWS_SECRET_ACCESS_KEY"}],
            }
        ]
        assert config["configMapAsEnv"] == [
            {
                "configMapName": "dex-data",
                "keyToEnv": [{"configMapKey": "endpoint", "envVar": "AWS_ENDPOINT_URL"}],
                "optional": True,
            }
        ]
    # The package is still one the spec checks accept, and a new content (a new version).
    assert pipelines.pipeline_name(package) == "dex-training"
    assert package != training()
    # Applied twice, a variable is set once (replaced, not appended).
    assert pipelines.with_env(package, spec.env) == package
    assert pipelines.with_env(training(), []) == training()
