"""The committed IR YAML is what the code compiles to, and it is fit for a cluster."""

from pathlib import Path

import pytest
import yaml

from dex_components import COMPONENT_IMAGE
from dex_pipelines.catalog import COMPILED_DIR, compile_all

NAMES = ["training", "evaluation", "promotion"]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    compile_all(out)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_committed_yaml_is_current(name: str, fresh: Path) -> None:
    committed = COMPILED_DIR / f"{name}.yaml"
    assert committed.exists(), f"run `dexctl pipeline compile`: {committed} missing"
    assert committed.read_text() == (fresh / f"{name}.yaml").read_text(), (
        f"{committed} is stale: run `dexctl pipeline compile`"
    )


@pytest.mark.parametrize("name", NAMES)
def test_every_executor_uses_the_component_image_without_pip(name: str) -> None:
    spec = yaml.safe_load((COMPILED_DIR / f"{name}.yaml").read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert executors
    for executor in executors.values():
        container = executor["container"]
        assert container["image"] == COMPONENT_IMAGE
        assert "pip install" not in " ".join(container["command"])


def test_training_columns_are_parameters() -> None:
    spec = yaml.safe_load((COMPILED_DIR / "training.yaml").read_text())
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("entity_key", "label", "timestamp_column", "feature_service", "n_trials"):
        assert name in params
    assert "defaultValue" not in params["entity_source"]


# Steps that read the model registry's current state (aliases, the champion).
REGISTRY_READERS = {
    "comp-register-and-promote",
    "comp-promote-challenger",
    "comp-evaluate-registered",
}


@pytest.mark.parametrize("name", NAMES)
def test_no_step_that_reads_outside_state_is_served_from_kfps_cache(name: str) -> None:
    """KFP reuses a cached step when its inputs are equal. A step whose inputs only name
    what it reads (a data URI, a feature service, a registered model) would then skip the
    new data or the registry as it is now; a step fed an artifact of an uncached one never
    matches an older key (artifacts are keyed by their unique names)."""
    spec = yaml.safe_load((COMPILED_DIR / f"{name}.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    for task_name, task in tasks.items():
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        reads_outside = not task.get("inputs", {}).get("artifacts") or (
            task["componentRef"]["name"] in REGISTRY_READERS
        )
        assert not (cached and reads_outside), f"{name}: task {task_name} is cacheable"
