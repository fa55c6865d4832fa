"""Evaluate: holdout metrics per task (binary: ROC AUC and friends, confusion matrix, ROC
points; multiclass: accuracy, macro F1, one-vs-rest AUC, confusion matrix; regression: R²,
RMSE, MAE), and an Evidently drift report (training reference vs evaluation data) with the
drift method and threshold fixed so the number means the same thing at every sample size."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn import metrics as skm

from dex.contract import FeatureContract

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
    # Class names as the confusion matrix orders them; empty for regression.
    classes: list[str] = []


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


def evaluate_model(model: Any, frame: pd.DataFrame, contract: FeatureContract) -> EvaluationResult:
    """Score ``model`` on ``frame`` as its contract's task says."""
    x, y = frame[contract.feature_columns], frame[contract.label]
    if contract.task == "regression":
        return score_regression(y, np.asarray(model.predict(x), dtype=float))
    classes = list(model.classes_)
    proba = np.asarray(model.predict_proba(x), dtype=float)
    if contract.task == "binary":
        # sklearn orders classes_; the second is the positive class (1 for 0/1 labels).
        positive = np.asarray(y) == classes[1]
        result = score(positive.astype(int), proba[:, 1])
        return result.model_copy(update={"classes": [str(c) for c in classes]})
    return score_multiclass(y, proba, classes)


def score_multiclass(
    y_true: pd.Series[Any], probabilities: np.ndarray[Any, Any], classes: list[Any]
) -> EvaluationResult:
    y = np.asarray(y_true)
    predicted = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    y_obj = y.astype(object)
    present = set(y_obj.tolist())
    auc = float("nan")
    if present == set(classes):
        auc = float(
            skm.roc_auc_score(
                y_obj, probabilities, multi_class="ovr", average="macro", labels=classes
            )
        )
    values = {
        "accuracy": float(skm.accuracy_score(y_obj, predicted)),
        "f1_macro": float(
            skm.f1_score(y_obj, predicted, average="macro", labels=classes, zero_division=0)
        ),
        "roc_auc_ovr": auc,
        "log_loss": float(
            skm.log_loss(y_obj, np.clip(probabilities, 1e-7, 1 - 1e-7), labels=classes)
        ),
        "rows": float(len(y)),
    }
    cm = skm.confusion_matrix(y_obj, predicted, labels=classes)
    return EvaluationResult(
        metrics=values,
        confusion_matrix=[[int(v) for v in row] for row in cm],
        roc_fpr=[],
        roc_tpr=[],
        roc_thresholds=[],
        threshold=0.0,
        classes=[str(c) for c in classes],
    )


def score_regression(y_true: pd.Series[Any], predicted: np.ndarray[Any, Any]) -> EvaluationResult:
    y = np.asarray(y_true, dtype=float)
    rmse = float(np.sqrt(skm.mean_squared_error(y, predicted)))
    mae = float(skm.mean_absolute_error(y, predicted))
    values = {
        "r2": float(skm.r2_score(y, predicted)) if len(y) > 1 else float("nan"),
        "rmse": rmse,
        "mae": mae,
        # Negated so every gate metric is "higher is better".
        "neg_rmse": -rmse,
        "neg_mae": -mae,
        "rows": float(len(y)),
    }
    return EvaluationResult(
        metrics=values,
        confusion_matrix=[],
        roc_fpr=[],
        roc_tpr=[],
        roc_thresholds=[],
        threshold=0.0,
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
