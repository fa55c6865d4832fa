"""Tune: an Optuna TPE study; every trial is an MLflow nested run under one parent run."""

from __future__ import annotations

from typing import Any

import mlflow
import optuna
import pandas as pd
from pydantic import BaseModel
from sklearn.metrics import log_loss, r2_score, roc_auc_score

from dex_components.errors import StepError
from dex_components.model import MAX_ITER, build_estimator, n_iter, suggest_params
from dex_components.split import time_split

# Trials fit on at most this many rows: enough to rank hyper-parameters, and it bounds the
# study's time whatever the training set's size. The final model fits on everything.
MAX_TUNING_ROWS = 10_000


# What a trial maximizes, per task (the name is logged as the trials' metric).
OBJECTIVES = {"binary": "val_roc_auc", "multiclass": "val_neg_log_loss", "regression": "val_r2"}


def _objective(task: str, model: Any, x: pd.DataFrame, y: pd.Series[Any]) -> float:
    if task == "regression":
        return float(r2_score(y, model.predict(x)))
    proba = model.predict_proba(x)
    if task == "binary":
        return float(roc_auc_score(y == model.classes_[1], proba[:, 1]))
    return -float(log_loss(y, proba, labels=list(model.classes_)))


class TuningResult(BaseModel):
    parent_run_id: str
    best_params: dict[str, Any]
    best_value: float
    trials: int


def tune(
    train: pd.DataFrame,
    *,
    feature_columns: list[str],
    label: str,
    timestamp_column: str,
    n_trials: int,
    timeout_s: float,
    experiment_id: str,
    seed: int,
    run_name: str = "tune",
    task: str = "binary",
    categorical: list[str] | None = None,
) -> TuningResult:
    if n_trials < 1:
        raise StepError(f"n_trials must be >= 1, got {n_trials}")
    # Tune against the newest slice of the training window, as the holdout does.
    fit_part, valid_part, _ = time_split(
        train, timestamp_column=timestamp_column, test_fraction=0.2
    )
    # time_split orders by time: the newest rows are the ones most like the holdout.
    fit_part = fit_part.tail(MAX_TUNING_ROWS)
    x_fit, y_fit = fit_part[feature_columns], fit_part[label]
    x_val, y_val = valid_part[feature_columns], valid_part[label]
    if task != "regression" and y_val.nunique() < 2:
        raise StepError(f"validation slice has one class of {label!r}: cannot score trials")
    objective_name = OBJECTIVES[task]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as parent:
        mlflow.log_params(
            {
                "n_trials": n_trials,
                "timeout_s": timeout_s,
                "sampler": "TPE",
                "tuning_rows": len(fit_part),
                "task": task,
                "objective": objective_name,
            }
        )

        def objective(trial: optuna.Trial) -> float:
            params = suggest_params(trial, rows=len(fit_part))
            model = build_estimator(params, seed, task, categorical)
            model.fit(x_fit, y_fit)
            score = _objective(task, model, x_val, y_val)
            with mlflow.start_run(
                experiment_id=experiment_id, run_name=f"trial-{trial.number}", nested=True
            ):
                mlflow.log_params({k: str(v) for k, v in params.items()})
                mlflow.log_metrics({objective_name: score, "n_iter": float(n_iter(model))})
            return score

        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        study.optimize(objective, n_trials=n_trials, timeout=timeout_s)
        best = study.best_trial
        best_params = {**best.params, "max_iter": MAX_ITER}
        mlflow.log_metrics(
            {f"best_{objective_name}": float(best.value or 0.0), "trials": len(study.trials)}
        )
        mlflow.log_params({f"best_{k}": str(v) for k, v in best_params.items()})
    return TuningResult(
        parent_run_id=parent.info.run_id,
        best_params=best_params,
        best_value=float(best.value or 0.0),
        trials=len(study.trials),
    )
