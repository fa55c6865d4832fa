"""Parquet sources written by the DEX data generator into the state folder."""

import os
from pathlib import Path

from feast import FileSource

DATA_DIR = Path(os.environ.get("DEX_DATA_DIR", Path(__file__).parent / "data")).resolve()

customer_profiles_source = FileSource(
    name="customer_profiles_source",
    path=str(DATA_DIR / "customer_profiles.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
    description="Customer profile snapshots (plan, contract, charges).",
)

customer_activity_source = FileSource(
    name="customer_activity_source",
    path=str(DATA_DIR / "customer_activity.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
    description="Weekly product-usage and support snapshots.",
)
