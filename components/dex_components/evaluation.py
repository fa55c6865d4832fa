"""Evaluate: holdout metrics, confusion matrix + ROC points, and an Evidently drift report
(training reference vs evaluation data) with the drift method and threshold fixed so the
number means the same thing at every sample size."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn import metrics as skm

DRIFT_METHOD = "psi"
DRIFT_THRESHOLD = 0.2
# PSI over 10 bins is stable well below this; larger frames only slow the report down.
DRIFT_SAMPLE_ROWS = 5000


class EvaluationResult(BaseModel):
    metrics: dict[str, float]
    confusion_matrix: list[list[int]]
    roc_fpr: list[float]
    roc_tpr: list[float]
    roc_thresholds: list[float]
    threshold: float


def score(
    y_true: pd.Series[Any] | np.ndarray[Any, Any],
    probabilities: np.ndarray[Any, Any],
    threshold: float = 0.5,
) -> EvaluationResult:
    y = np.asarray(y_true).astype(int)
    proba = np.asarray(probabilities, dtype=float)
    predicted = (proba >= threshold).astype(int)
    values = {
        "roc_auc": float(skm.roc_auc_score(y, proba)) if len(np.unique(y)) > 1 else float("nan"),
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "log_loss": float(skm.log_loss(y, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "positive_rate": float(y.mean()),
        "rows": float(len(y)),
    }
    fpr, tpr, thresholds = (
        skm.roc_curve(y, proba) if len(np.unique(y)) > 1 else ([0.0], [0.0], [1.0])
    )
    # KFP's ROC widget wants a manageable number of points.
    idx = np.unique(np.linspace(0, len(fpr) - 1, num=min(len(fpr), 50)).astype(int))
    cm = skm.confusion_matrix(y, predicted, labels=[0, 1])
    return EvaluationResult(
        metrics=values,
        confusion_matrix=[[int(v) for v in row] for row in cm],
        roc_fpr=[float(np.asarray(fpr)[i]) for i in idx],
        roc_tpr=[float(np.asarray(tpr)[i]) for i in idx],
        roc_thresholds=[float(min(np.asarray(thresholds)[i], 1.0)) for i in idx],
        threshold=threshold,
    )


class DriftSummary(BaseModel):
    method: str
    threshold: float
    drifted_columns: int
    total_columns: int
    drift_share: float
    column_scores: dict[str, float]


def _sample(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) <= DRIFT_SAMPLE_ROWS:
        return frame
    return frame.sample(DRIFT_SAMPLE_ROWS, random_state=0)


def drift_report(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]
) -> tuple[DriftSummary, str]:
    """(summary, self-contained HTML) of an Evidently DataDriftPreset run."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    report = Report(
        [DataDriftPreset(columns=columns, method=DRIFT_METHOD, threshold=DRIFT_THRESHOLD)]
    )
    snapshot = report.run(
        current_data=_sample(current[columns]), reference_data=_sample(reference[columns])
    )
    drifted, share, scores = 0, 0.0, {}
    for metric in snapshot.dict()["metrics"]:
        name = str(metric.get("metric_name", ""))
        value = metric.get("value")
        if name.startswith("DriftedColumnsCount"):
            drifted, share = int(value["count"]), float(value["share"])
        elif name.startswith("ValueDrift") and isinstance(value, int | float):
            column = str(metric.get("config", {}).get("column", name))
            scores[column] = float(value)
    summary = DriftSummary(
        method=DRIFT_METHOD,
        threshold=DRIFT_THRESHOLD,
        drifted_columns=drifted,
        total_columns=len(columns),
        drift_share=share,
        column_scores=scores,
    )
    return summary, snapshot.get_html_str(as_iframe=False)
