"""A throwaway DEX state folder with generated data and applied Feast definitions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dex.data import GeneratorConfig, generate, write_parquet
from dex.settings import DexSettings

START = datetime(2026, 1, 5, tzinfo=UTC)
WEEKS = 6
# Every variable a DEX process derives its stores from: cleared so no other test's leak in.
STORE_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "DEX_MLFLOW_TRACKING_URI",
    "DEX_MLFLOW_REGISTRY_URI",
    "DEX_FEAST_REGISTRY",
    "DEX_FEAST_ONLINE_DB",
    "DEX_DATA_DIR",
    "DEX_STATE_DIR",
)


@dataclass
class LocalState:
    settings: DexSettings
    monkeypatch: pytest.MonkeyPatch

    def client(self) -> Any:
        """A client bound to this state's stores, whatever another test set process-wide."""
        import mlflow

        from dex.registry import use_settings

        use_settings(self.settings)
        return mlflow.MlflowClient(
            tracking_uri=self.settings.tracking_uri, registry_uri=self.settings.registry_uri
        )

    @property
    def second_batch_start(self) -> datetime:
        return START + timedelta(weeks=WEEKS)

    def add_batch(self, *, seed: int, drift: float, customers: int, start: datetime) -> None:
        config = GeneratorConfig(
            n_customers=customers, weeks=WEEKS, seed=seed, drift=drift, start=start
        )
        write_parquet(generate(config), self.settings.data_dir, append=True)


def make_state(root: Path, customers: int) -> Iterator[LocalState]:
    from dex import features

    with pytest.MonkeyPatch.context() as mp:
        for name in STORE_VARIABLES:
            mp.delenv(name, raising=False)
        mp.setenv("DEX_STATE_DIR", str(root))
        settings = DexSettings()
        state = LocalState(settings, mp)
        state.add_batch(seed=11, drift=0.0, customers=customers, start=START)
        features.apply(settings)
        yield state


@pytest.fixture(scope="module")
def local_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalState]:
    yield from make_state(tmp_path_factory.mktemp("dex-state"), customers=2000)
