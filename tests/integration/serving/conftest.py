"""Serving fixtures: one sandbox world and one running predictor + transformer + monitor per
worker. Modules using them carry ``xdist_group(name="serving")`` so they share one worker."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dex_serving.settings import DriftSettings
from dex_testing.serving_world import World, build_in_subprocess
from dexctl.local_serving import LocalServing, LocalServingConfig, ServingURLs


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_in_subprocess(tmp_path_factory.mktemp("serving-world"))


@pytest.fixture(scope="session")
def trigger_marker(world: World) -> Path:
    return world.root / "trigger-fired"


@pytest.fixture(scope="session")
def stack(world: World, trigger_marker: Path) -> Iterator[ServingURLs]:
    config = LocalServingConfig(
        model=world.model,
        tracking_uri=world.tracking_uri,
        feature_repo=world.feature_repo,
        state_dir=world.root / "serving",
        env=world.env,
        drift=DriftSettings(
            window=1000,
            min_rows=200,
            # Computations are forced by the tests through POST /drift/compute.
            interval_s=3600,
            trigger_command=f"{sys.executable} -c \"open('{trigger_marker}', 'a').write('fired\\n')\"",
            trigger_cooldown_s=0,
        ),
        log_file=world.root / "serving.log",
    )
    with LocalServing(config) as urls:
        yield urls


@pytest.fixture(scope="session")
def one_hop(world: World) -> Iterator[ServingURLs]:
    """The predictor reading the features itself (spec.features.component: predictor)."""
    config = LocalServingConfig(
        model=world.model,
        tracking_uri=world.tracking_uri,
        feature_repo=world.feature_repo,
        state_dir=world.root / "one-hop",
        env=world.env,
        feature_component="predictor",
        monitor=False,
        log_file=world.root / "one-hop.log",
    )
    with LocalServing(config) as urls:
        yield urls


@pytest.fixture(params=["transformer", "predictor"])
def entry(request: pytest.FixtureRequest) -> ServingURLs:
    """Where entity keys go, for each component that can read the features."""
    fixture = "stack" if request.param == "transformer" else "one_hop"
    urls: ServingURLs = request.getfixturevalue(fixture)
    return urls
