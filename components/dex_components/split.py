"""Time-based split: the newest rows are the holdout, so evaluation looks forward in time
the way production does (a random split leaks the future into training)."""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel

from dex_components.errors import StepError


class SplitSummary(BaseModel):
    train_rows: int
    test_rows: int
    cutoff: str


def time_split(
    frame: pd.DataFrame, *, timestamp_column: str, test_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame, SplitSummary]:
    if not 0.0 < test_fraction < 1.0:
        raise StepError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(frame) < 10:
        raise StepError(f"need at least 10 rows to split, got {len(frame)}")
    ordered = frame.sort_values(timestamp_column, kind="stable").reset_index(drop=True)
    cut = round(len(ordered) * (1 - test_fraction))
    cut = min(max(cut, 1), len(ordered) - 1)
    train, test = ordered.iloc[:cut], ordered.iloc[cut:]
    cutoff = pd.Timestamp(test[timestamp_column].iloc[0]).isoformat()
    return (
        train.reset_index(drop=True),
        test.reset_index(drop=True),
        SplitSummary(train_rows=len(train), test_rows=len(test), cutoff=cutoff),
    )
