"""Typed settings of the three serving processes (built from command-line flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

DEFAULT_TRIGGER = "dexctl pipeline run training --local"


class PredictorSettings(BaseModel):
    model: str = Field(description="models:/name@alias, models:/name/<version>, or a storage URI.")
    served_name: str | None = Field(
        default=None, description="Name in the URL; defaults to the registered model name."
    )
    tracking_uri: str | None = None
    registry_uri: str | None = None
    host: str = "127.0.0.1"
    http_port: int = 8080
    max_batch: int = Field(default=1000, ge=1)


class TransformerSettings(BaseModel):
    model: str = Field(
        description="models:/name@alias or models:/name/<version> (needs a contract)."
    )
    served_name: str | None = None
    tracking_uri: str | None = None
    registry_uri: str | None = None
    feature_repo: Path = Field(description="Feast repository holding feature_store.yaml.")
    predictor_host: str = Field(description="host:port of the predictor.")
    predictor_protocol: Literal["v1", "v2"] = "v1"
    monitor_url: str | None = Field(default=None, description="Where inference events go.")
    host: str = "127.0.0.1"
    http_port: int = 8081
    max_batch: int = Field(default=1000, ge=1)
    log_buffer: int = Field(default=10_000, ge=1, description="Events held before dropping.")
    log_batch: int = Field(default=200, ge=1, description="Events per POST to the monitor.")


class MonitorSettings(BaseModel):
    model: str = Field(description="models:/name@alias or /<version>: default version + baseline.")
    tracking_uri: str | None = None
    registry_uri: str | None = None
    state_dir: Path = Field(description="Event database, reference data and HTML reports.")
    host: str = "127.0.0.1"
    http_port: int = 8082
    window: int = Field(default=10_000, ge=10, description="Sliding window: latest N rows.")
    min_rows: int = Field(default=200, ge=1, description="No verdict on fewer rows.")
    method: str = Field(default="wasserstein", description="Evidently per-column drift method.")
    threshold: float = Field(default=0.1, gt=0, description="Per-column drift threshold.")
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted columns that means dataset drift."
    )
    interval_s: float = Field(default=10.0, gt=0, description="Drift computation cadence.")
    trigger_command: str | None = Field(
        default=DEFAULT_TRIGGER, description="Run when drift crosses the threshold; None: off."
    )
    trigger_cooldown_s: float = Field(default=600.0, ge=0)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "events.sqlite"

    @property
    def report_path(self) -> Path:
        return self.state_dir / "drift-report.html"
