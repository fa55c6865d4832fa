"""Batch feature views. TTLs bound how stale a feature may be at a label's timestamp."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64

from data_sources import customer_activity_source, customer_profiles_source
from entities import customer

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(days=400),
    schema=[
        Field(name="tenure_months", dtype=Int64, description="Months since sign-up."),
        Field(name="monthly_charges", dtype=Float64, description="Current monthly bill."),
        Field(name="plan_tier", dtype=Int64, description="0 basic, 1 standard, 2 premium."),
        Field(name="contract_months", dtype=Int64, description="1, 12 or 24."),
        Field(name="age", dtype=Int64, description="Customer age in years."),
    ],
    source=customer_profiles_source,
    online=True,
    tags={"team": "growth"},
)

customer_activity = FeatureView(
    name="customer_activity",
    entities=[customer],
    # Weekly snapshots: a label more than two weeks after the last one has no fresh activity.
    ttl=timedelta(days=14),
    schema=[
        Field(name="sessions_7d", dtype=Int64, description="App sessions, last 7 days."),
        Field(name="avg_session_minutes", dtype=Float64, description="Mean session length."),
        Field(name="support_tickets_30d", dtype=Int64, description="Tickets, last 30 days."),
        Field(name="payment_failures_90d", dtype=Int64, description="Failed payments, 90 days."),
        Field(name="days_since_last_login", dtype=Int64, description="Days since last login."),
    ],
    source=customer_activity_source,
    online=True,
    tags={"team": "growth"},
)
