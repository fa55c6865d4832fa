"""Analysis providers: turn a gate into a number, then ``evaluate`` compares it.

One small interface (``Provider.measure``) with two implementations:

* ``PrometheusProvider`` runs a PromQL template through the HTTP query API.
* ``DexDriftProvider`` reads the DEX monitor's drift-share gauge (``dex.metrics.DRIFT_SHARE``,
  labelled ``dex.metrics.MODEL_LABELS``) from its Prometheus text endpoint directly (no
  Prometheus needed).

A gate with no data fails: a canary that nobody called has proven nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from dex.metrics import DRIFT_SHARE, MODEL_LABELS
from dex_operator.crd.models import AnalysisGate, AnalysisResult

# Default PromQL per metric. Placeholders are replaced literally (PromQL braces stay as is):
# {model} the served name (the DexModel's, which its InferenceService and servers carry), {namespace}, {revision} the
# canary's Knative revision / Standard variant, {version} its model version, {window},
# {percentile}. errorRate reads Knative's queue-proxy request counter; latency KServe's
# model-server predict histogram; drift the DEX monitor's gauge, whose name the monitor and
# this template share through ``dex.metrics``. The scrape config is expected to attach
# namespace/revision labels (pod labels) to the series.
DEFAULT_QUERIES: dict[str, str] = {
    "errorRate": (
        'sum(rate(revision_app_request_count{namespace="{namespace}",revision_name="{revision}",'
        'response_code_class="5xx"}[{window}])) / '
        'sum(rate(revision_app_request_count{namespace="{namespace}",revision_name="{revision}"}'
        "[{window}]))"
    ),
    "latency": (
        "histogram_quantile({percentile}, sum by (le) (rate(request_predict_seconds_bucket"
        '{model_name="{model}",namespace="{namespace}",revision="{revision}"}[{window}])))'
    ),
    "drift": "max(" + DRIFT_SHARE + '{model="{model}",version="{version}"})',
}


@dataclass(frozen=True)
class AnalysisContext:
    model: str
    namespace: str
    revision: str
    version: str


class Provider(Protocol):
    def measure(self, gate: AnalysisGate, ctx: AnalysisContext) -> float | None:
        """The gate's current value, or None when there is no data."""
        ...


class AnalysisError(RuntimeError):
    """The provider failed (unreachable, bad query): the gate fails with this message."""


def render_query(gate: AnalysisGate, ctx: AnalysisContext) -> str:
    template = gate.query or DEFAULT_QUERIES.get(gate.metric)
    if template is None:
        raise AnalysisError(f"no query for metric {gate.metric}")
    values = {
        "model": ctx.model,
        "namespace": ctx.namespace,
        "revision": ctx.revision,
        "version": ctx.version,
        "window": gate.window,
        "percentile": f"{gate.percentile:g}",
    }
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class PrometheusProvider:
    def __init__(
        self, base_url: str, *, timeout: float = 10.0, client: httpx.Client | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout)

    def query(self, promql: str) -> float | None:
        try:
            resp = self._client.get(f"{self.base_url}/api/v1/query", params={"query": promql})
        except httpx.HTTPError as exc:
            raise AnalysisError(f"Prometheus unreachable at {self.base_url}: {exc}") from exc
        body = (
            resp.json()
            if resp.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if resp.status_code != 200 or body.get("status") != "success":
            raise AnalysisError(
                f"Prometheus query failed ({resp.status_code}): "
                f"{body.get('error', resp.text[:200])}"
            )
        data = body["data"]
        if data["resultType"] == "scalar":
            return _finite(float(data["result"][1]))
        if data["resultType"] != "vector" or not data["result"]:
            return None
        # Several series: the worst one decides is the caller's business; take the maximum
        # only when the template did not aggregate, so one bad pod is not averaged away.
        return _finite(max(float(series["value"][1]) for series in data["result"]))

    def measure(self, gate: AnalysisGate, ctx: AnalysisContext) -> float | None:
        return self.query(render_query(gate, ctx))


class DexDriftProvider:
    """Reads the drift share from the monitor's /metrics (Prometheus text format)."""

    metric = DRIFT_SHARE

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, client: httpx.Client | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout)

    def measure(self, gate: AnalysisGate, ctx: AnalysisContext) -> float | None:
        return self.share(ctx.model, ctx.version)

    def share(self, model: str, version: str) -> float | None:
        """The monitor's drift share of ``model`` at ``version``; None when it has none."""
        try:
            resp = self._client.get(f"{self.base_url}/metrics")
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise AnalysisError(f"DEX monitor unreachable at {self.base_url}: {exc}") from exc
        wanted = dict(zip(MODEL_LABELS, (model, version), strict=True))
        for family in text_string_to_metric_families(resp.text):
            if family.name != self.metric:
                continue
            for sample in family.samples:
                if all(sample.labels.get(k) == v for k, v in wanted.items()):
                    return _finite(float(sample.value))
        return None


def passes(gate: AnalysisGate, value: float) -> bool:
    # Every built-in metric is bad when high; ``min`` is for custom queries that are good
    # when high (a success ratio, throughput) and must say so.
    comparison = gate.comparison or "max"
    return value >= gate.threshold if comparison == "min" else value <= gate.threshold


def evaluate(
    gates: list[AnalysisGate], providers: Mapping[str, Provider], ctx: AnalysisContext
) -> list[AnalysisResult]:
    """Measure every gate; provider errors and missing data fail the gate, never raise."""
    results = []
    for gate in gates:
        value: float | None = None
        message = ""
        try:
            value = providers[gate.provider].measure(gate, ctx)
        except AnalysisError as exc:
            message = str(exc)
        if value is None and not message:
            message = "no data"
        results.append(
            AnalysisResult(
                name=gate.name,
                metric=gate.metric,
                value=value,
                threshold=gate.threshold,
                passed=value is not None and passes(gate, value),
                message=message,
            )
        )
    return results
