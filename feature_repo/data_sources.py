"""Parquet sources written by the DEX data generator into the state folder."""

import os
from pathlib import Path

from feast import FileSource

# A folder, or an object-store URI (s3://bucket/prefix: Feast reads it through pyarrow, whose
# S3 client takes AWS_ENDPOINT_URL and the AWS credentials from the environment).
DATA_DIR = os.environ.get("DEX_DATA_DIR") or str(Path(__file__).parent / "data")


def data_path(name: str) -> str:
    if "://" in DATA_DIR:
        return f"{DATA_DIR.rstrip('/')}/{name}"
    return str(Path(DATA_DIR).resolve() / name)


customer_profiles_source = FileSource(
    name="customer_profiles_source",
    path=data_path("customer_profiles.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
    description="Customer profile snapshots (plan, contract, charges).",
)

customer_activity_source = FileSource(
    name="customer_activity_source",
    path=data_path("customer_activity.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
    description="Weekly product-usage and support snapshots.",
)
