"""The drift monitor: stores inference events durably and compares served features with the
model's training reference data (Evidently), exporting Prometheus gauges."""
