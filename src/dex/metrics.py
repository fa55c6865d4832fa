"""Names of the Prometheus series the DEX monitor exports and the operator's analysis reads.

One owner, because they are an interface between two deployables: the monitor writes
``dex_drift_share{model,version}`` and a rollout's drift gate queries exactly that series.
"""

from __future__ import annotations

import hashlib

# Labels every per-model series carries. `model` is the served name (the InferenceService
# name, what clients address and what the transformer logs as the CloudEvent's
# inferenceservicename); `version` is `version_label(...)` of the model that answered. The
# monitor writes them, the operator's drift gate queries them: both sides call this module.
MODEL_LABELS = ("model", "version")

DRIFT_SHARE = "dex_drift_share"
DRIFT_DETECTED = "dex_drift_detected"
DRIFT_WINDOW_ROWS = "dex_drift_window_rows"
FEATURE_DRIFT_SCORE = "dex_feature_drift_score"
DRIFT_TRIGGERS = "dex_drift_triggers"
DRIFT_COMPUTE_SECONDS = "dex_drift_compute_seconds"
MONITOR_EVENTS = "dex_monitor_events"
MONITOR_STORAGE_ERRORS = "dex_monitor_storage_errors"

INFERENCE_EVENTS_SENT = "dex_inference_events_sent"
INFERENCE_EVENTS_DROPPED = "dex_inference_events_dropped"
INFERENCE_EVENTS_BUFFERED = "dex_inference_events_buffered"
INFERENCE_EVENTS_SPOOLED = "dex_inference_events_spooled"
INFERENCE_EVENTS_REPLAYED = "dex_inference_events_replayed"
INFERENCE_SPOOL_BYTES = "dex_inference_spool_bytes"


def version_label(registry_version: str | None, storage_uri: str | None) -> str:
    """The ``version`` label of a served model: its registry version, or for a model served
    straight from a storage URI (no registry version) a short digest of that URI."""
    if registry_version:
        return registry_version
    if storage_uri:
        return "uri-" + hashlib.sha256(storage_uri.encode()).hexdigest()[:8]
    return ""
