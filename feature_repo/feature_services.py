"""Feature services: one per model. A model's feature contract names one of these."""

from feast import FeatureService

from feature_views import customer_activity, customer_profile
from on_demand_features import customer_ratios

churn_v1 = FeatureService(
    name="churn_v1",
    features=[customer_profile, customer_activity, customer_ratios],
    description="Everything the churn classifier uses.",
    tags={"model": "churn-classifier"},
)

churn_profile_only = FeatureService(
    name="churn_profile_only",
    features=[customer_profile],
    description="A cheap baseline: profile features only.",
)
