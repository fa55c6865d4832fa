"""DexModel and DexPipeline, as pydantic models.

These classes are the single source of truth for the CRDs: ``render.py`` turns them into the
OpenAPI schema in ``manifests/crd/`` (descriptions, defaults, enums, ranges and the CEL rules
below all come from here), and the operator parses live objects with the same classes.
Field names are camelCase on the wire (Kubernetes style) and snake_case in Python.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

# A Go-style duration as Kubernetes users write them: 30s, 1m, 1h30m, 500ms.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
URL_PATTERN = r"^https?://[^\s]+$"
DEFAULT_STEPS = (10, 25, 50)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def cel(rule: str, message: str, field_path: str | None = None) -> JsonValue:
    """One ``x-kubernetes-validations`` entry; ``message`` must name the offending field."""
    entry: dict[str, JsonValue] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class CrdModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_enum_values=True
    )


# --------------------------------------------------------------------------- DexModel spec


class ModelSource(CrdModel):
    """Where the served model comes from: an MLflow registered model pinned by version or
    followed by alias, or a storage URI used as is."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "[has(self.version), has(self.alias), has(self.storageUri)]"
                    ".filter(x, x).size() == 1",
                    "exactly one of spec.model.version, spec.model.alias or "
                    "spec.model.storageUri must be set",
                ),
                cel(
                    "!(has(self.version) || has(self.alias)) || has(self.name)",
                    "spec.model.name (the MLflow registered model) is required with "
                    "spec.model.version or spec.model.alias",
                    ".name",
                ),
            ]
        }
    )

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="MLflow registered model name, e.g. churn-classifier.",
    )
    version: str | None = Field(
        default=None,
        pattern=r"^[0-9]+$",
        max_length=20,
        description="Registered model version to serve. A new value starts a rollout.",
    )
    alias: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]+$",
        max_length=255,
        description="Registered model alias to follow (e.g. champion). The operator polls the "
        "registry and starts a rollout whenever the alias moves to another version.",
    )
    storage_uri: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:/.+$",
        max_length=2048,
        description="Serve this storage URI (s3://, gs://, pvc://, …) directly, bypassing the "
        "registry.",
    )
    format: Literal["sklearn", "xgboost", "lightgbm", "mlflow", "onnx", "pytorch", "tensorflow"] = (
        Field(default="sklearn", description="Model format, the KServe modelFormat name.")
    )
    registry_url: str | None = Field(
        default=None,
        pattern=URL_PATTERN,
        description="MLflow tracking server URL; defaults to the operator's DEX_MLFLOW_URL.",
    )


class FeatureSpec(CrdModel):
    """The Feast feature service online features are read from. It must be the feature
    service the model version was trained on (recorded on the MLflow version)."""

    feature_service: str = Field(
        min_length=1, max_length=253, description="Feast FeatureService name, e.g. churn_v1."
    )
    entity_key: str = Field(
        min_length=1,
        max_length=253,
        description="Entity join key sent by clients, e.g. customer_id.",
    )
    image: str = Field(
        default="ghcr.io/dataenginex/dex-serving:0.1.0",
        min_length=1,
        description="Transformer container image (the DEX Feast transformer).",
    )
    component: Literal["transformer", "predictor"] = Field(
        default="transformer",
        description="The KServe component that reads the features: transformer (a "
        "transformer in front of the predictor, each its own pod) or predictor (the DEX "
        "predictor reads Feast itself: one hop fewer, no transformer; needs the DEX "
        "predictor, not spec.serving.runtime).",
    )


class ResourceList(CrdModel):
    """CPU and memory quantities."""

    cpu: str | None = Field(default=None, pattern=QUANTITY_PATTERN, description="CPU, e.g. 500m.")
    memory: str | None = Field(
        default=None, pattern=QUANTITY_PATTERN, description="Memory, e.g. 512Mi."
    )


class Resources(CrdModel):
    """Container resource requests and limits of a serving container."""

    requests: ResourceList | None = Field(default=None, description="Guaranteed resources.")
    limits: ResourceList | None = Field(default=None, description="Resource ceilings.")


class LoggerSpec(CrdModel):
    """KServe payload logger: where request/response events go (the DEX drift monitor)."""

    url: str = Field(pattern=URL_PATTERN, description="Receiver of CloudEvents, e.g. the monitor.")
    mode: Literal["all", "request", "response"] = Field(
        default="all", description="Which payloads to log."
    )


class ServingSpec(CrdModel):
    """How the InferenceService serves the model."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.minReplicas) || !has(self.maxReplicas) || "
                    "self.maxReplicas >= self.minReplicas",
                    "spec.serving.maxReplicas must be >= spec.serving.minReplicas",
                    ".maxReplicas",
                ),
                # KServe's validating webhook (Knative's pod autoscaler takes concurrency or
                # rps only) would refuse the InferenceService after the DexModel is accepted.
                cel(
                    "!has(self.deploymentMode) || self.deploymentMode != 'Knative' || "
                    "!has(self.scaleMetric) || self.scaleMetric in ['concurrency', 'rps']",
                    "spec.serving.scaleMetric must be concurrency or rps in Knative mode "
                    "(KServe refuses cpu and memory there)",
                    ".scaleMetric",
                ),
            ]
        }
    )

    runtime: str | None = Field(
        default=None,
        max_length=253,
        description="KServe ServingRuntime to serve spec.model.storageUri with (model format "
        "+ storage URI). Unset: the DEX predictor container (spec.serving.image) serves it.",
    )
    image: str = Field(
        default="ghcr.io/dataenginex/dex-serving:0.1.0",
        min_length=1,
        description="DEX serving image for the predictor when no runtime is named.",
    )
    protocol: Literal["v1", "v2"] = Field(
        default="v2", description="Inference protocol: v1 (:predict) or v2 (Open Inference)."
    )
    deployment_mode: Literal["Knative", "Standard"] | None = Field(
        default=None,
        description="KServe deployment mode, written to the InferenceService annotation. When "
        "unset the cluster default from the inferenceservice-config ConfigMap applies.",
    )
    min_replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Minimum replicas (0 allows scale to zero in Knative mode).",
    )
    max_replicas: int = Field(default=1, ge=1, le=1000, description="Maximum replicas.")
    scale_metric: Literal["concurrency", "rps", "cpu", "memory"] | None = Field(
        default=None, description="Autoscaling metric."
    )
    scale_target: int | None = Field(
        default=None, ge=1, description="Autoscaling target value for scaleMetric."
    )
    resources: Resources | None = Field(
        default=None,
        description="Resources of each serving container (predictor and transformer); KServe "
        "gives a container without any 1 CPU and 2Gi.",
    )
    logger: LoggerSpec | None = Field(
        default=None, description="Payload logging for monitoring; unset disables it."
    )


class AnalysisGate(CrdModel):
    """One metric gate evaluated after each step's hold interval."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.metric != 'custom' || has(self.query)",
                    "spec.rollout.analysis[].query is required when metric is custom",
                    ".query",
                ),
                cel(
                    "!(self.metric in ['errorRate', 'drift']) || "
                    "(self.threshold >= 0.0 && self.threshold <= 1.0)",
                    "spec.rollout.analysis[].threshold must be within [0, 1] for errorRate "
                    "and drift",
                    ".threshold",
                ),
                cel(
                    "self.metric != 'latency' || self.threshold > 0.0",
                    "spec.rollout.analysis[].threshold must be > 0 seconds for latency",
                    ".threshold",
                ),
            ]
        }
    )

    name: str = Field(
        pattern=DNS_LABEL_PATTERN, max_length=63, description="Gate name, shown in status/events."
    )
    metric: Literal["errorRate", "latency", "drift", "custom"] = Field(
        description="What is measured: errorRate (share of 5xx), latency (seconds at "
        "percentile), drift (DEX drift share), custom (query)."
    )
    provider: Literal["prometheus", "dexDrift"] = Field(
        default="prometheus",
        description="Where the value comes from: prometheus (PromQL) or dexDrift (the DEX "
        "monitor's drift endpoint).",
    )
    threshold: float = Field(description="Limit the measured value is compared against.")
    comparison: Literal["max", "min"] | None = Field(
        default=None,
        description="max: pass when value <= threshold; min: pass when value >= threshold. "
        "Defaults to max (every built-in metric is bad when high); a custom query that is "
        "good when high sets min.",
    )
    percentile: float = Field(
        default=0.99, gt=0.0, lt=1.0, description="Latency percentile (latency metric only)."
    )
    window: str = Field(
        default="1m",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="PromQL range window.",
    )
    query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL template overriding the default; {model}, {namespace}, {revision}, "
        "{version}, {window} and {percentile} are substituted.",
    )


class RolloutSpec(CrdModel):
    """How a new model version replaces the serving one."""

    strategy: Literal["Canary", "Immediate"] = Field(
        default="Canary", description="Canary: stepwise traffic with analysis; Immediate: swap."
    )
    steps: list[int] = Field(
        default_factory=lambda: list(DEFAULT_STEPS),
        min_length=1,
        max_length=20,
        description="Canary traffic weights in percent, strictly increasing, each 1-100. After "
        "the last step passes analysis the canary is promoted to 100%.",
        json_schema_extra={
            "default": list(DEFAULT_STEPS),
            "items": {"type": "integer", "minimum": 1, "maximum": 100},
            "x-kubernetes-validations": [
                cel(
                    "self.isSorted() && self.all(x, self.exists_one(y, y == x))",
                    "spec.rollout.steps must be strictly increasing",
                )
            ],
        },
    )
    interval: str = Field(
        default="1m",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="How long each step holds (after the canary is Ready at its weight) before "
        "analysis, as a duration: 30s, 5m, 1h.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("duration(self) >= duration('1s')", "spec.rollout.interval must be >= 1s")
            ]
        },
    )
    # 10m as Argo Rollouts' and Flagger's progressDeadlineSeconds (600): long enough for a
    # model image pull and load, short enough that a canary that never comes up is noticed.
    progress_deadline: str = Field(
        default="10m",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="Longest wait for a step to take effect (the canary Ready, KServe showing "
        "the step's weight) before the rollout rolls back (or, with autoRollback false, stops "
        "in phase Failed); a first deployment past it is marked Degraded. Holds and analysis "
        "do not count; a pause restarts it. A duration: 30s, 10m, 1h.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "duration(self) >= duration('1s')",
                    "spec.rollout.progressDeadline must be >= 1s",
                )
            ]
        },
    )
    analysis: list[AnalysisGate] = Field(
        default_factory=list, max_length=10, description="Metric gates; all must pass per step."
    )
    failure_limit: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Failed analyses tolerated in one rollout; reaching it rolls back.",
    )
    auto_rollback: bool = Field(
        default=True,
        description="Roll back when failureLimit is reached; when false the rollout stops in "
        "phase Failed with the canary at its weight for a manual decision.",
    )
    paused: bool = Field(
        default=False, description="Manual gate: hold the current step until set to false."
    )
    prometheus_url: str | None = Field(
        default=None,
        pattern=URL_PATTERN,
        description="Prometheus base URL for analysis; defaults to the operator's DEX_PROMETHEUS_URL.",
    )


class DexModelSpec(CrdModel):
    """A served model: its source, features, serving shape and rollout policy."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.features) || !has(self.model.storageUri)",
                    "spec.features needs a registry model (spec.model.name with a version or "
                    "alias): the transformer reads the feature contract from the registry",
                    ".features",
                ),
                cel(
                    "!has(self.features) || self.features.component != 'predictor' || "
                    "!has(self.serving.runtime)",
                    "spec.features.component predictor needs the DEX predictor: a "
                    "spec.serving.runtime cannot read Feast",
                    ".features.component",
                ),
            ]
        }
    )

    model: ModelSource = Field(description="Model source (registry version/alias or URI).")
    features: FeatureSpec | None = Field(
        default=None,
        description="Feast feature service; adds a transformer when set (or has the "
        "predictor read it: features.component).",
    )
    serving: ServingSpec = Field(
        default_factory=ServingSpec,
        description="Serving runtime, protocol, scaling, resources and logger.",
        json_schema_extra={"default": {}},
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="Rollout strategy, steps, interval, analysis gates and manual gates.",
        json_schema_extra={"default": {}},
    )

    def feature_reader(self) -> Literal["transformer", "predictor"] | None:
        """The KServe component that reads the Feast features (and logs inference events)."""
        return self.features.component if self.features is not None else None


# ------------------------------------------------------------------------- shared status


class Condition(CrdModel):
    """A Kubernetes-style condition."""

    type: str = Field(description="Condition type: Ready, Progressing, Degraded.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One-word CamelCase reason.")
    message: str = Field(default="", description="Human readable detail.")
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the condition was computed for."
    )


CONDITIONS_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


# ------------------------------------------------------------------------- DexModel status

Phase = Literal["Pending", "Progressing", "Promoted", "RolledBack", "Failed"]


class AnalysisResult(CrdModel):
    """Outcome of one gate at one step."""

    name: str = Field(description="Gate name.")
    metric: str = Field(description="Gate metric.")
    value: float | None = Field(default=None, description="Measured value; unset when no data.")
    threshold: float = Field(description="Threshold it was compared with.")
    passed: bool = Field(description="Whether the gate passed.")
    message: str = Field(default="", description="Why it failed (e.g. no data).")


class TrafficTarget(CrdModel):
    """Traffic routed to one revision or variant, mirrored from the InferenceService."""

    revision: str = Field(description="Knative revision or Standard-mode variant name.")
    percent: int = Field(description="Traffic percent.")
    tag: str | None = Field(default=None, description="Traffic tag (prev/latest).")


class InferenceServiceStatus(CrdModel):
    """Mirror of the owned InferenceService's revision and traffic fields."""

    name: str = Field(description="InferenceService name.")
    url: str | None = Field(default=None, description="InferenceService URL.")
    deployment_mode: str | None = Field(default=None, description="Knative or Standard.")
    ready: bool = Field(
        default=False,
        description="Serves at url: the InferenceService's Ready condition and, in Standard "
        "mode, the route accepted by the Gateway.",
    )
    stable_revision: str | None = Field(default=None, description="Revision/variant at 100-w%.")
    canary_revision: str | None = Field(default=None, description="Canary revision/variant.")
    traffic: list[TrafficTarget] = Field(default_factory=list, description="Observed split.")


class DexModelStatus(CrdModel):
    """Observed state of a DexModel. Everything the rollout needs to resume lives here."""

    phase: Phase = Field(
        default="Pending", description="Pending, Progressing, Promoted, RolledBack or Failed."
    )
    observed_generation: int | None = Field(default=None, description="Last reconciled generation.")
    stable_version: str | None = Field(default=None, description="Version serving stable traffic.")
    stable_storage_uri: str | None = Field(default=None, description="Storage URI of stable.")
    canary_version: str | None = Field(default=None, description="Version under rollout.")
    canary_storage_uri: str | None = Field(default=None, description="Storage URI of the canary.")
    canary_weight: int = Field(default=0, description="Traffic percent committed to the canary.")
    current_step: int | None = Field(default=None, description="Index into spec.rollout.steps.")
    step_started_at: datetime | None = Field(
        default=None, description="When the current step's hold began (canary Ready at weight)."
    )
    waiting_since: datetime | None = Field(
        default=None,
        description="When the current wait for progress began (canary Ready, weight shown); "
        "spec.rollout.progressDeadline counts from it.",
    )
    failed_checks: int = Field(default=0, description="Failed analyses in this rollout.")
    rolled_back_storage_uri: str | None = Field(
        default=None, description="Rejected storage URI; not retried until the source changes."
    )
    last_analysis: list[AnalysisResult] = Field(
        default_factory=list, description="Results of the last analysis."
    )
    inference_service: InferenceServiceStatus | None = Field(
        default=None, description="The owned InferenceService's revisions and traffic."
    )
    resolved_from: str | None = Field(
        default=None, description="The spec.model source the resolved fields belong to."
    )
    resolved_version: str | None = Field(
        default=None, description="Version the registry resolved spec.model to."
    )
    resolved_storage_uri: str | None = Field(
        default=None, description="Storage URI the registry resolved spec.model to."
    )
    registry_checked_at: datetime | None = Field(
        default=None, description="Last registry lookup (alias polling)."
    )
    last_action: str | None = Field(
        default=None, description="Last manual action handled (action@storageUri)."
    )
    message: str = Field(default="", description="Latest human-readable progress note.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing and Degraded conditions.",
        json_schema_extra=CONDITIONS_EXTRA,
    )


# --------------------------------------------------------------------------- DexPipeline


class PipelineRef(CrdModel):
    """Which pipeline to run: a shipped one by name or a compiled package."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.name) != has(self.package)",
                    "exactly one of spec.pipeline.name or spec.pipeline.package must be set",
                )
            ]
        }
    )

    name: Literal["training", "evaluation", "promotion"] | None = Field(
        default=None, description="A pipeline shipped with DEX."
    )
    package: str | None = Field(
        default=None, min_length=1, description="Compiled KFP IR YAML (path or URL)."
    )


class DriftTrigger(CrdModel):
    """Run the pipeline when a DexModel's prediction drift exceeds a threshold."""

    type: Literal["drift"] = Field(default="drift", description="Trigger kind.")
    dex_model: str = Field(pattern=DNS_LABEL_PATTERN, max_length=253, description="DexModel name.")
    threshold: float = Field(ge=0.0, le=1.0, description="Drift share above which to run.")
    cooldown: str = Field(
        default="1h",
        pattern=DURATION_PATTERN,
        description="Least time between two runs this trigger starts (e.g. 30m, 1h).",
    )


class KfpSpec(CrdModel):
    """Kubeflow Pipelines connection."""

    endpoint: str | None = Field(
        default=None, pattern=URL_PATTERN, description="KFP API URL; defaults to the operator's."
    )
    experiment: str = Field(default="dex", min_length=1, description="KFP experiment name.")


# An environment variable's name as Kubernetes accepts it (C identifier, dots and dashes).
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


class KeySelector(CrdModel):
    """One key of a ConfigMap or Secret in the namespace KFP runs the pipeline's pods in."""

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=253, description="Object name.")
    key: str = Field(min_length=1, max_length=253, description="Key in its data.")
    optional: bool | None = Field(
        default=None, description="Start the step even if the object or key is missing."
    )


class EnvVarSource(CrdModel):
    """Where a variable's value comes from (as a container's env[].valueFrom)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.configMapKeyRef) != has(self.secretKeyRef)",
                    "exactly one of configMapKeyRef or secretKeyRef must be set",
                )
            ]
        }
    )

    config_map_key_ref: KeySelector | None = Field(default=None, description="A ConfigMap key.")
    secret_key_ref: KeySelector | None = Field(default=None, description="A Secret key.")


class EnvVar(CrdModel):
    """A variable set in every step's container, as a container's env[] entry."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.value) != has(self.valueFrom)",
                    "exactly one of value or valueFrom must be set",
                )
            ]
        }
    )

    name: str = Field(pattern=ENV_NAME_PATTERN, max_length=253, description="Variable name.")
    value: str | None = Field(default=None, description="A literal value.")
    value_from: EnvVarSource | None = Field(
        default=None, description="A ConfigMap or Secret key (read when the step starts)."
    )


class DexPipelineSpec(CrdModel):
    """A pipeline run on Kubeflow Pipelines, on a schedule or on a trigger."""

    pipeline: PipelineRef = Field(description="Pipeline to run.")
    parameters: dict[str, str] = Field(
        default_factory=dict, description="Pipeline parameters (strings, parsed by KFP)."
    )
    schedule: str | None = Field(
        default=None,
        pattern=r"^(@(hourly|daily|weekly|monthly|yearly)|(\S+\s+){4}\S+)$",
        description="Cron schedule (5 fields) or @daily-style macro.",
    )
    triggers: list[DriftTrigger] = Field(
        default_factory=list, max_length=10, description="Event triggers (drift)."
    )
    kfp: KfpSpec = Field(
        default_factory=KfpSpec,
        description="KFP endpoint and experiment.",
        json_schema_extra={"default": {}},
    )
    suspend: bool = Field(default=False, description="Stop scheduling and triggering new runs.")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=100,
        description="Environment of every step (e.g. MLFLOW_TRACKING_URI, object-store "
        "credentials from a Secret), set in the pipeline version DEX uploads.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class PipelineRun(CrdModel):
    """One KFP run."""

    id: str = Field(description="KFP run id.")
    state: str = Field(description="KFP run state.")
    started_at: datetime | None = Field(default=None, description="Start time.")
    finished_at: datetime | None = Field(default=None, description="End time.")
    link: str | None = Field(default=None, description="Run page in the KFP UI.")


class TriggerStatus(CrdModel):
    """One drift trigger's state: a run starts once per crossing of the threshold."""

    dex_model: str = Field(description="The DexModel whose drift share is read.")
    drift_share: float | None = Field(default=None, description="Last share read; unset: none.")
    above: bool = Field(default=False, description="Whether the share is above the threshold.")
    crossings: int = Field(default=0, ge=0, description="Runs this trigger has started.")
    last_triggered_at: datetime | None = Field(default=None, description="When it last ran.")
    last_run_id: str | None = Field(default=None, description="The run it last started.")
    message: str = Field(default="", description="Why the last crossing did or did not run.")


class DexPipelineStatus(CrdModel):
    """Observed state of a DexPipeline."""

    observed_generation: int | None = Field(default=None, description="Last reconciled generation.")
    pipeline_version: str | None = Field(
        default=None,
        description="The KFP pipeline version runs use: the pipeline's name and its package's "
        "content hash (uploaded once per content).",
    )
    recurring_run_id: str | None = Field(
        default=None, description="The KFP recurring run spec.schedule made."
    )
    triggers: list[TriggerStatus] = Field(
        default_factory=list, max_length=10, description="Drift triggers' state, in spec order."
    )
    last_run: PipelineRun | None = Field(default=None, description="Most recent run.")
    recent_runs: list[PipelineRun] = Field(
        default_factory=list, max_length=10, description="Up to 10 recent runs, newest first."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready and Degraded conditions.",
        json_schema_extra=CONDITIONS_EXTRA,
    )
