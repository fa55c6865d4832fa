"""Typed settings of the three serving processes: the one owner of their defaults.

The command lines are derived from these models (``dex_serving.run`` for the containers,
``dexctl serve`` / ``dexctl monitor`` locally): a field's default, help and flag spelling are
written here once. A field's flags default to ``--field-name``; ``flags`` in its
``json_schema_extra`` lists others (the first is the canonical one), e.g. the spellings KServe
appends to a custom container's arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic.fields import FieldInfo


def flags(name: str, field: FieldInfo) -> list[str]:
    """Command-line spellings of a settings field."""
    extra = field.json_schema_extra
    declared = extra.get("flags") if isinstance(extra, dict) else None
    if isinstance(declared, list) and declared:
        return [str(flag) for flag in declared]
    return ["--" + name.replace("_", "-")]


def _flags(*names: str) -> Any:
    return {"flags": list(names)}


class _ServerSettings(BaseModel):
    model: str = Field(description="models:/name@alias, models:/name/<version>, or a storage URI.")
    tracking_uri: str | None = Field(default=None, description="MLflow tracking URI.")
    registry_uri: str | None = Field(default=None, description="MLflow registry URI.")
    host: str = Field(default="127.0.0.1", description="Address to bind (0.0.0.0 in a container).")
    # A proxy that reuses a kept-alive connection at the moment the server closes it answers
    # 502 (a POST is not retried): the server must hold idle connections longer than any proxy
    # in front does. Gateways: Traefik 90 s, NGINX and AWS ALB 60 s, Google's LBs 600 s;
    # KServe's own default (65 s) is below Traefik's, and a canary's first request after a
    # quiet minute met it.
    timeout_keep_alive: int = Field(
        default=620,
        ge=1,
        description="Seconds an idle keep-alive connection is held open; above the idle "
        "timeout of the proxy or Gateway in front.",
        json_schema_extra=_flags("--timeout-keep-alive", "--timeout_keep_alive"),
    )


class PredictorSettings(_ServerSettings):
    served_name: str | None = Field(
        default=None,
        description="Name in the URL; defaults to the registered model name.",
        json_schema_extra=_flags("--served-name", "--model_name"),
    )
    http_port: int = Field(default=8080, json_schema_extra=_flags("--port", "--http_port"))
    max_batch: int = Field(default=1000, ge=1, description="Largest accepted batch.")


class TransformerSettings(_ServerSettings):
    model: str = Field(
        description="models:/name@alias or models:/name/<version> (needs a contract)."
    )
    served_name: str | None = Field(
        default=None,
        description="Name in the URL; defaults to the registered model name.",
        json_schema_extra=_flags("--served-name", "--model_name"),
    )
    feature_repo: Path = Field(description="Feast repository holding feature_store.yaml.")
    feast_registry_server: str | None = Field(
        default=None,
        description="host:port of a Feast registry server (feast serve_registry); with "
        "--feast-feature-server it replaces the repository's own stores (in a cluster).",
    )
    feast_feature_server: str | None = Field(
        default=None, description="URL of a Feast online feature server (feast serve)."
    )
    predictor_host: str | None = Field(
        default=None,
        description="host:port of the predictor. Unset: this process loads the model and "
        "predicts itself (one hop: the server KServe runs as the predictor component).",
        json_schema_extra=_flags("--predictor-host", "--predictor_host"),
    )
    predictor_protocol: Literal["v1", "v2"] = Field(
        default="v1", description="Protocol spoken to the predictor."
    )
    monitor_url: str | None = Field(default=None, description="Where inference events go.")
    http_port: int = Field(default=8081, json_schema_extra=_flags("--port", "--http_port"))
    max_batch: int = Field(default=1000, ge=1, description="Largest accepted batch.")
    log_buffer: int = Field(default=10_000, ge=1, description="Events held before dropping.")
    # Each POST costs the serving process a burst of GIL time (and the monitor an ingest) that
    # a request being served then waits out: fewer, larger batches put that cost on fewer
    # requests. OpenTelemetry's batch processor sends 512 per export as well.
    log_batch: int = Field(default=512, ge=1, description="Events per POST to the monitor.")
    log_linger_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds events wait for a fuller batch before they are sent anyway.",
    )
    event_spool: Path | None = Field(
        default=None,
        description="Folder keeping event batches the monitor cannot take yet, replayed when "
        "it answers again (unset: dropped after retries).",
    )
    event_spool_bytes: int = Field(
        default=256 * 2**20, ge=1, description="Spool bound; batches beyond it are dropped."
    )

    @model_validator(mode="after")
    def _feast_servers_together(self) -> TransformerSettings:
        # One server without the other would mix a remote registry with a local store.
        if (self.feast_registry_server is None) != (self.feast_feature_server is None):
            raise ValueError(
                "--feast-registry-server and --feast-feature-server go together (or neither)"
            )
        return self


class DriftSettings(BaseModel):
    """How the monitor judges drift and what it does about it."""

    window: int = Field(default=10_000, ge=10, description="Drift window: latest N served rows.")
    min_rows: int = Field(default=200, ge=1, description="No verdict on fewer rows.")
    method: str = Field(default="wasserstein", description="Evidently per-feature drift method.")
    threshold: float = Field(default=0.1, gt=0, description="Per-feature drift threshold.")
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted features that is dataset drift."
    )
    interval_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between drift computations.",
        json_schema_extra=_flags("--interval"),
    )
    trigger_command: str | None = Field(
        # Off by default: in a cluster, retraining is a DexPipeline's drift trigger, not a
        # command in the monitor's container. `dexctl` sets a local retrain command.
        default=None,
        description="Command run when drift crosses the threshold ('' or unset: none).",
        json_schema_extra=_flags("--trigger-command", "--trigger"),
    )
    trigger_cooldown_s: float = Field(
        default=600.0,
        ge=0,
        description="Seconds between two triggers.",
        json_schema_extra=_flags("--trigger-cooldown", "--cooldown"),
    )

    @field_validator("trigger_command")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None


class MonitorSettings(DriftSettings, _ServerSettings):
    model: str = Field(description="models:/name@alias or /<version>: default version + baseline.")
    state_dir: Path = Field(description="Event database, reference data and HTML reports.")
    http_port: int = Field(default=8082, json_schema_extra=_flags("--port", "--http_port"))

    @property
    def db_path(self) -> Path:
        return self.state_dir / "events.sqlite"

    @property
    def report_path(self) -> Path:
        return self.state_dir / "drift-report.html"


def to_args(settings: BaseModel, *, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The command line that parses back into ``settings`` (canonical flags; unset
    optionals left out), for a parent process starting a server."""
    args: list[str] = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if name in exclude or value is None:
            continue
        args += [flags(name, field)[0], str(value)]
    return args
