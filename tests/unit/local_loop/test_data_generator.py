from dex.data import GeneratorConfig, generate
from dex.data.churn import ACTIVITY_FEATURES, ENTITY_KEY, LABEL, PROFILE_FEATURES, TIMESTAMP


def test_same_seed_same_data() -> None:
    a = generate(GeneratorConfig(n_customers=300, seed=7))
    b = generate(GeneratorConfig(n_customers=300, seed=7))
    for left, right in ((a.profiles, b.profiles), (a.activity, b.activity), (a.labels, b.labels)):
        assert left.equals(right)


def test_different_seed_different_labels() -> None:
    a = generate(GeneratorConfig(n_customers=300, seed=1))
    b = generate(GeneratorConfig(n_customers=300, seed=2))
    assert not a.labels[LABEL].equals(b.labels[LABEL])


def test_schema_and_keys() -> None:
    data = generate(GeneratorConfig(n_customers=200, weeks=4))
    assert list(data.profiles.columns) == [ENTITY_KEY, *PROFILE_FEATURES, TIMESTAMP]
    assert list(data.activity.columns) == [ENTITY_KEY, *ACTIVITY_FEATURES, TIMESTAMP]
    assert data.labels[ENTITY_KEY].is_unique
    assert set(data.labels[LABEL].unique()) <= {0, 1}
    # every label lies after the first activity snapshot, so a point-in-time join can hit
    assert (data.labels[TIMESTAMP] > data.activity[TIMESTAMP].min()).all()


def test_drift_moves_features_and_labels() -> None:
    base = generate(GeneratorConfig(n_customers=4000, drift=0.0))
    drifted = generate(GeneratorConfig(n_customers=4000, drift=1.0))
    assert drifted.labels[LABEL].mean() > base.labels[LABEL].mean() + 0.2
    assert drifted.activity["sessions_7d"].mean() < 0.7 * base.activity["sessions_7d"].mean()
    assert (
        drifted.activity["support_tickets_30d"].mean()
        > base.activity["support_tickets_30d"].mean() + 1
    )
