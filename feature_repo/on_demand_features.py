"""Derived features computed at retrieval time, identically offline and online."""

import pandas as pd
from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64

from feature_views import customer_activity, customer_profile


@on_demand_feature_view(
    sources=[customer_profile, customer_activity],
    schema=[
        Field(name="charges_per_tenure_month", dtype=Float64),
        Field(name="tickets_per_session", dtype=Float64),
    ],
    mode="pandas",
    description="Price pressure and support load relative to usage.",
)
def customer_ratios(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=inputs.index)
    out["charges_per_tenure_month"] = inputs["monthly_charges"] / (inputs["tenure_months"] + 1.0)
    out["tickets_per_session"] = inputs["support_tickets_30d"] / (inputs["sessions_7d"] + 1.0)
    return out
