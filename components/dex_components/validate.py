"""Validate: schema and quality checks on an entity/label frame.

Every failed rule is reported (not just the first) so one run shows everything wrong with
a batch; the step then fails with a message naming each column and rule.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import BaseModel, Field

from dex.tasks import Problem, check_gate_metric, resolve_task
from dex_components.errors import DataValidationError

Severity = Literal["error", "warning"]


class ColumnRange(BaseModel):
    min: float | None = None
    max: float | None = None


class ValidationSpec(BaseModel):
    entity_key: str
    timestamp_column: str
    label: str | None = None
    label_values: list[int | str] | None = Field(default=None, description="Allowed label values.")
    ranges: dict[str, ColumnRange] = Field(default_factory=dict)
    min_rows: int = Field(default=1, ge=1)
    task: str = Field(default="auto", description="auto (inferred from the label) or a task.")
    gate_metric: str = Field(default="", description="Promotion metric; '' = the task's own.")
    min_class_rows: int = Field(default=1, ge=1, description="Rows every class needs.")
    entity_key_type: str = Field(default="auto", description="auto, int or str.")


class CheckResult(BaseModel):
    rule: str
    column: str | None
    passed: bool
    severity: Severity = "error"
    detail: str = ""


class QualityReport(BaseModel):
    rows: int
    columns: list[str]
    checks: list[CheckResult]
    task: str | None = Field(default=None, description="The run's task, when the label fits.")
    entity_key_type: str | None = None

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and c.severity == "error"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_markdown(self) -> str:
        lines = [
            "# Data quality report",
            "",
            f"Rows: **{self.rows}**, columns: {', '.join(f'`{c}`' for c in self.columns)}",
            f"Task: **{self.task or 'none'}**, entity key type: {self.entity_key_type or 'none'}",
            "",
            "| rule | column | result | detail |",
            "| --- | --- | --- | --- |",
        ]
        for c in self.checks:
            result = "pass" if c.passed else ("FAIL" if c.severity == "error" else "warn")
            lines.append(f"| {c.rule} | {c.column or ''} | {result} | {c.detail} |")
        return "\n".join(lines) + "\n"

    def raise_for_failures(self) -> None:
        if self.failures:
            problems = "; ".join(
                f"column {c.column!r}: {c.rule} ({c.detail})"
                if c.column
                else f"{c.rule} ({c.detail})"
                for c in self.failures
            )
            raise DataValidationError(f"data validation failed: {problems}")


def validate_frame(frame: pd.DataFrame, spec: ValidationSpec) -> QualityReport:
    checks: list[CheckResult] = []
    rows = len(frame)
    checks.append(
        CheckResult(
            rule="not_empty",
            column=None,
            passed=rows >= spec.min_rows,
            detail=f"{rows} rows, at least {spec.min_rows} required",
        )
    )
    required = [spec.entity_key, spec.timestamp_column] + ([spec.label] if spec.label else [])
    for column in required:
        present = column in frame.columns
        checks.append(
            CheckResult(
                rule="column_present",
                column=column,
                passed=present,
                detail="present" if present else f"missing; columns are {list(frame.columns)}",
            )
        )
    present_required = [c for c in required if c in frame.columns]
    for column in present_required:
        nulls = int(frame[column].isna().sum())
        checks.append(
            CheckResult(
                rule="not_null", column=column, passed=nulls == 0, detail=f"{nulls} null values"
            )
        )
    if spec.timestamp_column in frame.columns and rows:
        ok = pd.api.types.is_datetime64_any_dtype(frame[spec.timestamp_column])
        checks.append(
            CheckResult(
                rule="timestamp_type",
                column=spec.timestamp_column,
                passed=ok,
                detail=str(frame[spec.timestamp_column].dtype),
            )
        )
    if {spec.entity_key, spec.timestamp_column} <= set(frame.columns):
        dupes = int(frame.duplicated(subset=[spec.entity_key, spec.timestamp_column]).sum())
        checks.append(
            CheckResult(
                rule="unique_key",
                column=spec.entity_key,
                passed=dupes == 0,
                detail=f"{dupes} duplicate ({spec.entity_key}, {spec.timestamp_column}) rows",
            )
        )
    if spec.label and spec.label in frame.columns and spec.label_values is not None:
        values = frame[spec.label].dropna()
        bad = int((~values.isin(spec.label_values)).sum())
        checks.append(
            CheckResult(
                rule="allowed_values",
                column=spec.label,
                passed=bad == 0,
                detail=f"{bad} values outside {spec.label_values}",
            )
        )
    for column, bounds in spec.ranges.items():
        if column not in frame.columns:
            checks.append(CheckResult(rule="range", column=column, passed=False, detail="missing"))
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        low = int((values < bounds.min).sum()) if bounds.min is not None else 0
        high = int((values > bounds.max).sum()) if bounds.max is not None else 0
        checks.append(
            CheckResult(
                rule="range",
                column=column,
                passed=low + high == 0,
                detail=f"{low} below {bounds.min}, {high} above {bounds.max}",
            )
        )
    task: str | None = None
    if spec.label and spec.label in frame.columns and rows:
        resolved, problems = resolve_task(
            frame[spec.label], spec.task, min_class_rows=spec.min_class_rows
        )
        checks.extend(_failed(p) for p in problems)
        if resolved is not None:
            task = resolved
            checks.append(CheckResult(rule="task", column=spec.label, passed=True, detail=task))
            problem = check_gate_metric(resolved, spec.gate_metric) if spec.gate_metric else None
            if problem is not None:
                checks.append(_failed(problem))
    key_type = None
    if spec.entity_key in frame.columns:
        key_type, check = _entity_key_type(frame[spec.entity_key], spec.entity_key_type)
        checks.append(check)
    return QualityReport(
        rows=rows,
        columns=[str(c) for c in frame.columns],
        checks=checks,
        task=task,
        entity_key_type=key_type,
    )


def _failed(problem: Problem) -> CheckResult:
    return CheckResult(
        rule=problem.rule, column=problem.column, passed=False, detail=problem.detail
    )


def _entity_key_type(keys: pd.Series[object], declared: str) -> tuple[str | None, CheckResult]:
    """int or str: what Feast can join on and serving can take on the wire."""
    values = keys.dropna()
    if pd.api.types.is_integer_dtype(keys):
        found: str | None = "int"
    elif not pd.api.types.is_numeric_dtype(keys) and all(isinstance(v, str) for v in values):
        found = "str"
    else:
        found = None
    name = str(keys.name)
    if found is None:
        detail = f"entity keys must be integers or text, found {keys.dtype}"
        return None, CheckResult(rule="entity_key_type", column=name, passed=False, detail=detail)
    if declared not in ("auto", found):
        detail = f"declared {declared}, found {found} values ({keys.dtype})"
        return None, CheckResult(rule="entity_key_type", column=name, passed=False, detail=detail)
    return found, CheckResult(rule="entity_key_type", column=name, passed=True, detail=found)
