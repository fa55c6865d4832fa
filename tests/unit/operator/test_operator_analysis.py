"""Gate evaluation and PromQL templating (the providers' HTTP side is integration-tested
against a real Prometheus and a real metrics endpoint)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dex_operator.analysis import (
    AnalysisContext,
    AnalysisError,
    evaluate,
    passes,
    render_query,
)
from dex_operator.crd.models import AnalysisGate

CTX = AnalysisContext(
    model="churn", namespace="prod", revision="churn-predictor-00002", version="7"
)


def gate(**kw: object) -> AnalysisGate:
    return AnalysisGate.model_validate(
        {"name": "g", "metric": "errorRate", "threshold": 0.05, **kw}
    )


def test_default_error_rate_query_substitutes_revision() -> None:
    q = render_query(gate(window="2m"), CTX)
    assert 'revision_name="churn-predictor-00002"' in q
    assert "[2m]" in q
    assert 'namespace="prod"' in q
    # PromQL's own braces stay; only the placeholders are replaced.
    assert "{namespace}" not in q
    assert "{revision}" not in q
    assert "{window}" not in q
    assert q.count("{") == q.count("}") == 2  # the two label matchers


def test_default_drift_query_reads_the_monitors_series() -> None:
    # The monitor exports dex.metrics.DRIFT_SHARE labelled model/version; the gate must
    # select exactly the canary's series of it.
    q = render_query(gate(metric="drift", provider="dexDrift", threshold=0.3), CTX)
    assert q == 'max(dex_drift_share{model="churn",version="7"})'


def test_latency_and_custom_queries() -> None:
    q = render_query(gate(metric="latency", threshold=0.2, percentile=0.95), CTX)
    assert q.startswith("histogram_quantile(0.95,")
    assert 'model_name="churn"' in q
    custom = gate(metric="custom", query='x{v="{version}",m="{model}"}')
    assert render_query(custom, CTX) == 'x{v="7",m="churn"}'


@pytest.mark.parametrize(
    ("metric", "threshold", "value", "ok"),
    [
        ("errorRate", 0.05, 0.04, True),
        ("errorRate", 0.05, 0.06, False),
        ("latency", 0.2, 0.2, True),
        ("drift", 0.3, 0.31, False),
        ("custom", 10, 11, False),
    ],
)
def test_passes_defaults_to_max(metric: str, threshold: float, value: float, ok: bool) -> None:
    assert passes(gate(metric=metric, threshold=threshold, query="q"), value) is ok


@pytest.mark.parametrize(
    ("threshold", "value", "ok"),
    [(0.8, 0.85, True), (0.8, 0.8, True), (0.8, 0.7, False), (10, 11, True)],
)
def test_explicit_min_passes_at_or_above(threshold: float, value: float, ok: bool) -> None:
    # A custom query that is good when high (a success ratio) states comparison: min.
    g = gate(metric="custom", query="q", threshold=threshold, comparison="min")
    assert passes(g, value) is ok


def test_accuracy_is_no_longer_a_metric() -> None:
    # Nothing exports online accuracy (DEX has no online labels): the CRD refuses the gate
    # instead of failing every analysis with "no data".
    with pytest.raises(ValidationError, match="metric"):
        gate(metric="accuracy", threshold=0.8)


class Fixed:
    def __init__(self, value: float | None = None, error: str | None = None) -> None:
        self.value, self.error = value, error

    def measure(self, g: AnalysisGate, ctx: AnalysisContext) -> float | None:
        if self.error:
            raise AnalysisError(self.error)
        return self.value


def test_evaluate_failures_never_raise() -> None:
    gates = [
        gate(name="a"),
        gate(name="b", provider="dexDrift", metric="drift", threshold=0.3),
        gate(name="c"),
    ]
    results = evaluate(gates, {"prometheus": Fixed(0.01), "dexDrift": Fixed(None)}, CTX)
    assert [r.passed for r in results] == [True, False, True]
    assert results[1].message == "no data"
    broken = evaluate([gate()], {"prometheus": Fixed(error="down")}, CTX)
    assert not broken[0].passed
    assert broken[0].message == "down"
