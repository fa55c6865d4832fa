"""Task types: what a label asks of the model, and the rules a data set must meet for each.

One owner for the task of a run: validation infers or checks it (refusing, before any
training, what the run could not handle), and training, evaluation, promotion and serving
read it from the feature contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

from pydantic import BaseModel

# The task literals live with the contract that records them: the operator reads contracts
# and must not reach this module's pandas-based rules.
from dex.contract import Task
from dex.contract import TaskSetting as TaskSetting  # re-exported: callers import it from here

if TYPE_CHECKING:
    import pandas as pd

TASKS: tuple[str, ...] = get_args(Task)

# More distinct integer labels than this reads as a quantity (regression), not classes.
MAX_CLASSES = 50
# Early stopping holds out a stratified slice: a class needs a few rows to appear in it.
MIN_CLASS_ROWS = 5
# Histogram gradient boosting bins a categorical feature into at most 255 categories.
MAX_CATEGORIES = 255

# Holdout metrics per task, every one "higher is better" so one gate rule fits all.
GATE_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "accuracy", "f1", "precision", "recall"),
    "multiclass": ("f1_macro", "accuracy", "roc_auc_ovr"),
    "regression": ("r2", "neg_rmse", "neg_mae"),
}


def default_gate_metric(task: str) -> str:
    return GATE_METRICS[task][0]


class Problem(BaseModel):
    """A rule a column breaks; validation reports it as a failed check."""

    rule: str
    column: str | None
    detail: str


def _is_integral(values: pd.Series[float]) -> bool:
    import numpy as np

    return bool(np.all(np.mod(values.to_numpy(dtype=float), 1.0) == 0.0))


def resolve_task(
    label: pd.Series[object], declared: str, *, min_class_rows: int = MIN_CLASS_ROWS
) -> tuple[Task | None, list[Problem]]:
    """The task of a run on ``label`` (``declared`` may be 'auto'), or the problems why no
    task fits, each naming the label column and the rule."""
    import pandas as pd

    name = str(label.name)
    values = label.dropna()
    if declared not in (*TASKS, "auto"):
        return None, [
            Problem(rule="task", column=None, detail=f"unknown task {declared!r}; use {TASKS}")
        ]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    classes = sorted(values.unique().tolist(), key=str)
    k = len(classes)
    integral = numeric and _is_integral(values.astype(float))
    if declared == "auto":
        if numeric and (not integral or k > MAX_CLASSES):
            task: Task = "regression"
        else:
            task = "binary" if k <= 2 else "multiclass"
    else:
        task = declared  # type: ignore[assignment]  # checked against TASKS above

    problems: list[Problem] = []
    shown = classes[:10]
    if task == "regression":
        if not numeric:
            problems.append(
                Problem(
                    rule="regression_label",
                    column=name,
                    detail=f"regression needs a numeric label, found {values.dtype} "
                    f"values like {shown[:3]}; declare task: binary or multiclass",
                )
            )
        return (None if problems else task), problems
    if numeric and not integral:
        problems.append(
            Problem(
                rule="classification_label",
                column=name,
                detail=f"{k} distinct non-integer values cannot be classes of a {task} "
                "task; declare task: regression",
            )
        )
    elif k < 2:
        problems.append(
            Problem(rule="label_classes", column=name, detail=f"only one class present: {shown}")
        )
    elif task == "binary" and k != 2:
        hint = "regression" if numeric and k > MAX_CLASSES else "multiclass"
        problems.append(
            Problem(
                rule="binary_classes",
                column=name,
                detail=f"binary needs exactly 2 classes, found {k}: {shown}; declare task: {hint}",
            )
        )
    elif task == "multiclass" and k < 3:
        problems.append(
            Problem(
                rule="multiclass_classes",
                column=name,
                detail=f"multiclass needs at least 3 classes, found {k}: {shown}; "
                "declare task: binary",
            )
        )
    elif k > MAX_CLASSES:
        problems.append(
            Problem(
                rule="too_many_classes",
                column=name,
                detail=f"{k} classes, at most {MAX_CLASSES} supported"
                + ("; declare task: regression" if numeric else ""),
            )
        )
    if not problems:
        counts = values.value_counts()
        rare = {str(c): int(n) for c, n in counts.items() if n < min_class_rows}
        if rare:
            problems.append(
                Problem(
                    rule="class_rows",
                    column=name,
                    detail=f"classes with fewer than {min_class_rows} rows: {rare}",
                )
            )
    return (None if problems else task), problems


def check_gate_metric(task: Task, metric: str) -> Problem | None:
    if metric in GATE_METRICS[task]:
        return None
    return Problem(
        rule="gate_metric",
        column=None,
        detail=f"gate metric {metric!r} is not computed for a {task} task; "
        f"choose one of {list(GATE_METRICS[task])}",
    )


def categorical_columns(
    frame: pd.DataFrame, features: list[str], declared: list[str]
) -> tuple[list[str], list[Problem]]:
    """Feature columns to encode as categories: the declared ones plus every text column,
    in feature order; or the problems that make a feature unusable, each naming it."""
    import pandas as pd

    problems: list[Problem] = []
    unknown = [c for c in declared if c not in features]
    if unknown:
        problems.append(
            Problem(
                rule="categorical_features",
                column=unknown[0],
                detail=f"declared categorical {unknown} are not features of the service; "
                f"features are {features}",
            )
        )
    chosen: list[str] = []
    for column in features:
        series = frame[column]
        if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(
            series
        ):
            problems.append(
                Problem(
                    rule="feature_type",
                    column=column,
                    detail=f"{series.dtype} is not a model input; derive a number from it",
                )
            )
            continue
        is_text = not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))
        if not is_text and column not in declared:
            continue
        if is_text:
            kinds = {type(v).__name__ for v in series.dropna().tolist()}
            if kinds - {"str"}:
                problems.append(
                    Problem(
                        rule="feature_type",
                        column=column,
                        detail=f"values of mixed or unsupported types {sorted(kinds)}; "
                        "a feature is numbers or text",
                    )
                )
                continue
        distinct = int(series.nunique(dropna=True))
        if distinct > MAX_CATEGORIES:
            problems.append(
                Problem(
                    rule="categories",
                    column=column,
                    detail=f"{'text' if is_text else 'categorical'} feature with {distinct} "
                    f"distinct values; at most {MAX_CATEGORIES} categories are supported",
                )
            )
            continue
        chosen.append(column)
    return chosen, problems
