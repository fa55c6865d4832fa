"""The estimator DEX trains: gradient-boosted trees, which take missing values and mixed
scales as they come, so training and serving need no extra preprocessing step to skew.

A classifier for binary and multiclass labels (string classes are kept in ``classes_``, so
the model answers in the user's labels), a regressor for regression. Categorical features
are encoded inside the model (an OrdinalEncoder in front of the trees' native categorical
support), so serving sends raw values, strings included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

# Early stopping ends most fits well before this; it caps the slowest (low learning rate).
MAX_ITER = 200
PINNED_REQUIREMENTS_PACKAGES = ("scikit-learn", "pandas", "numpy", "cloudpickle")


def build_estimator(
    params: dict[str, Any],
    seed: int,
    task: str = "binary",
    categorical: list[str] | None = None,
) -> BaseEstimator:
    """The model for ``task``; with ``categorical`` columns, a Pipeline that encodes them
    (unknown or missing categories become missing values, which the trees route)."""
    trees = _trees(params, seed, task, categorical_count=len(categorical or []))
    if not categorical:
        return trees
    encode = ColumnTransformer(
        [
            (
                "categories",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                    dtype=np.float64,
                ),
                list(categorical),
            )
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    return Pipeline([("encode", encode), ("model", trees)])


def final_estimator(model: Any) -> Any:
    return model[-1] if isinstance(model, Pipeline) else model


def n_iter(model: Any) -> int:
    return int(final_estimator(model).n_iter_)


def _trees(params: dict[str, Any], seed: int, task: str, categorical_count: int) -> BaseEstimator:
    kind = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    # The encoder puts the categorical columns first.
    categorical_features = list(range(categorical_count)) if categorical_count else None
    return kind(
        categorical_features=categorical_features,
        learning_rate=float(params.get("learning_rate", 0.1)),
        max_leaf_nodes=int(params.get("max_leaf_nodes", 31)),
        max_depth=params.get("max_depth"),
        min_samples_leaf=int(params.get("min_samples_leaf", 20)),
        l2_regularization=float(params.get("l2_regularization", 0.0)),
        max_iter=int(params.get("max_iter", MAX_ITER)),
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=10,
        random_state=seed,
    )


def suggest_params(trial: optuna.Trial, rows: int | None = None) -> dict[str, Any]:
    # A leaf may hold at most a tenth of the rows: on a data set of a few hundred rows a
    # larger minimum leaves the trees nothing to split, and the trial predicts a constant.
    leaf_high = 200 if rows is None else max(2, min(200, rows // 10))
    leaf_low = min(10, leaf_high)
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.04, 0.3, log=True),
        "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 8, 64, log=True),
        "max_depth": trial.suggest_categorical("max_depth", [None, 3, 5, 8]),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", leaf_low, leaf_high, log=True),
        "l2_regularization": trial.suggest_float("l2_regularization", 1e-4, 10.0, log=True),
        "max_iter": MAX_ITER,
    }


def pinned_requirements() -> list[str]:
    """Exact versions of what the model needs at load time.

    Pinning skips MLflow's requirement inference (~15 s a model) and keeps serving images
    reproducible.
    """
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in PINNED_REQUIREMENTS_PACKAGES]
