"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_SECONDS = Histogram(
    "dex_operator_reconcile_duration_seconds",
    "Time to reconcile one DexModel.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter(
    "dex_operator_reconcile_errors_total",
    "Reconciles that raised or gave up, by reason: an API error's HTTP status, "
    "StaleReadError (every read was stale), or the exception's type.",
    ["reason"],
)
ROLLOUTS = Counter(
    "dex_operator_rollouts_total",
    "Rollouts by outcome (started, promoted, rolled_back, failed).",
    ["outcome"],
)
CANARY_WEIGHT = Gauge(
    "dex_operator_canary_weight_percent",
    "Traffic percent currently committed to the canary.",
    ["namespace", "name"],
)

OUTCOME_BY_REASON = {
    "RolloutStarted": "started",
    "Promoted": "promoted",
    "RolledBack": "rolled_back",
}
