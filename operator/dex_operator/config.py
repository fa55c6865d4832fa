"""Operator configuration from ``DEX_*`` environment variables (the Deployment sets them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEX_", extra="ignore")

    mlflow_url: str = Field(
        default="http://mlflow.dex-system.svc:5000",
        description="MLflow tracking server (REST API): the platform's (manifests/mlflow).",
    )
    prometheus_url: str = Field(
        default="http://prometheus.monitoring.svc:9090", description="Prometheus for analysis."
    )
    monitor_url: str = Field(
        default="http://dex-monitor.dex-system.svc:8080",
        description="DEX drift monitor; its /metrics exposes dex_drift_share{model,version}.",
    )
    kserve_namespace: str = Field(
        default="kserve", description="Namespace of the inferenceservice-config ConfigMap."
    )
    gateway: str = Field(
        default="dex-system/dex-gateway",
        description="Gateway API Gateway (namespace/name) a Standard-mode DexModel's HTTPRoute "
        "attaches to; the route's weights split traffic between versions.",
    )
    ingress_domain: str = Field(
        default="example.com",
        description="Domain of the route's host {name}-{namespace}.<domain> (KServe's default).",
    )
    feast_registry_server: str = Field(
        default="dex-feast.dex-system:6570",
        description="Feast registry server (host:port, gRPC) the transformers read feature "
        "services from: the platform's feature store (manifests/feast).",
    )
    feast_feature_server: str = Field(
        default="http://dex-feast.dex-system:6566",
        description="Feast online feature server (feast serve) the transformers read from.",
    )
    kfp_url: str = Field(
        default="http://ml-pipeline.kubeflow.svc:8888",
        description="Kubeflow Pipelines API (a DexPipeline's spec.kfp.endpoint overrides it).",
    )
    kfp_ui_url: str = Field(
        default="http://ml-pipeline-ui.kubeflow.svc",
        description="KFP UI base URL for the run links in a DexPipeline's status.",
    )
    pipeline_sync_seconds: float = Field(
        default=30.0, gt=0, description="How often a DexPipeline's runs are read from KFP."
    )
    resync_seconds: float = Field(
        default=5.0, gt=0, description="Level-based re-reconcile period per DexModel."
    )
    registry_poll_seconds: float = Field(
        default=30.0, gt=0, description="How often alias-following models ask the registry."
    )
    worker_limit: int = Field(
        default=20, ge=1, description="Threads running reconciles (and API connections)."
    )
    queue_worker_limit: int = Field(
        default=5000,
        ge=1,
        description="kopf per-object event queues alive at once (asyncio tasks, cheap); when "
        "all are taken the watch stream waits for one to idle out.",
    )
    http_timeout: float = Field(default=10.0, gt=0, description="Registry/Prometheus timeout.")
    api_timeout: float = Field(
        default=60.0, gt=0, description="Kubernetes API request timeout (not watches)."
    )
    metrics_port: int = Field(default=8080, ge=0, description="Prometheus /metrics port; 0=off.")
    liveness_port: int = Field(default=8081, ge=0, description="kopf /healthz port; 0=off.")
    bind_host: str = Field(default="0.0.0.0", description="Address metrics/liveness bind to.")
    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty = cluster-wide."
    )
    operator_name: str = Field(default="dex-operator", description="Event reporting component.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Level of the operator's own logs (dex_operator.*)."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


# The process's configuration, read once at import: every layer must see the same values.
CONFIG = OperatorConfig()
