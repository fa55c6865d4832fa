"""Evidently data drift of a window of served features against the training reference.

Method and per-column threshold are always explicit: Evidently's default test changes with the
sample size (K-S below ~1000 rows, Wasserstein above), so an unpinned gate would not mean the
same thing from one window to the next.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

CATEGORICAL_METHOD = "psi"
CATEGORICAL_THRESHOLD = 0.2


class DriftResult(BaseModel):
    model: str | None
    version: str | None
    rows: int
    reference_rows: int
    method: str
    threshold: float
    drift_share_threshold: float
    drift_share: float
    drifted_columns: int
    dataset_drift: bool
    scores: dict[str, float]
    computed_at: str
    seconds: float
    triggered: bool = False


def load_reference(path: Path, columns: list[str]) -> Any:
    """A parquet/CSV file, or a folder holding one (MLflow downloads folders as folders)."""
    import pandas as pd

    if path.is_dir():
        candidates = sorted(
            p for p in path.rglob("*") if p.suffix in {".parquet", ".csv"} and p.is_file()
        )
        if not candidates:
            raise ValueError(f"no parquet or CSV file under {path}")
        path = candidates[0]
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"reference data {path.name} lacks model columns {missing}")
    frame = frame[columns]
    # Numbers as float64 (served rows arrive as JSON numbers); text stays text (categories).
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c])]
    return frame.astype(dict.fromkeys(numeric, "float64"))


def compute(
    reference: Any,
    current: Any,
    *,
    columns: list[str],
    method: str,
    threshold: float,
    drift_share: float,
    model: str | None = None,
    version: str | None = None,
    html_path: Path | None = None,
) -> DriftResult:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    started = time.perf_counter()
    report = Report(
        [
            DataDriftPreset(
                columns=columns,
                # The configured method is for numbers; text (categorical) features get PSI,
                # which is defined on categories where Wasserstein and K-S are not.
                num_method=method,
                num_threshold=threshold,
                cat_method=CATEGORICAL_METHOD,
                cat_threshold=CATEGORICAL_THRESHOLD,
                drift_share=drift_share,
            )
        ]
    )
    snapshot = report.run(current_data=current[columns], reference_data=reference[columns])
    share, count = 0.0, 0
    scores: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            count = int(metric["value"]["count"])
        elif kind.endswith("ValueDrift"):
            scores[str(config["column"])] = float(metric["value"])
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = html_path.with_suffix(".tmp")
        snapshot.save_html(str(tmp))
        tmp.replace(html_path)
    return DriftResult(
        model=model,
        version=version,
        rows=len(current),
        reference_rows=len(reference),
        method=method,
        threshold=threshold,
        drift_share_threshold=drift_share,
        drift_share=share,
        drifted_columns=count,
        # Evidently's own verdict rule: dataset drift when the drifted share reaches the bar.
        dataset_drift=share >= drift_share,
        scores=scores,
        computed_at=datetime.now(UTC).isoformat(),
        seconds=round(time.perf_counter() - started, 4),
    )
