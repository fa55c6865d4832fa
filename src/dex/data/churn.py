"""A deterministic customer-churn world: profiles, weekly activity snapshots and labels.

Each customer has one profile row, one activity snapshot per week and one labelled
observation at a random time after their first snapshot. The churn probability is a
logistic function of the *latest snapshot before the label time* — exactly what a
point-in-time join returns — so a model trained through Feast can learn it.

``drift`` (0..1) moves later batches: usage falls, prices and tickets rise, and the
label relationship itself changes (tickets matter more, tenure less), so a model
trained on drift=0 data degrades on drifted data and Evidently sees the shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

ENTITY_KEY = "customer_id"
TIMESTAMP = "event_timestamp"
CREATED = "created_timestamp"
LABEL = "churned"

PROFILE_FEATURES = ["tenure_months", "monthly_charges", "plan_tier", "contract_months", "age"]
ACTIVITY_FEATURES = [
    "sessions_7d",
    "avg_session_minutes",
    "support_tickets_30d",
    "payment_failures_90d",
    "days_since_last_login",
]


class GeneratorConfig(BaseModel):
    n_customers: int = Field(default=5000, ge=1, description="Customers (= labelled rows).")
    weeks: int = Field(default=8, ge=2, description="Weekly activity snapshots per customer.")
    start: datetime = Field(default=datetime(2026, 1, 5, tzinfo=UTC))
    seed: int = Field(default=42)
    drift: float = Field(default=0.0, ge=0.0, le=1.0, description="0 = reference world.")
    first_customer_id: int = Field(default=1000, ge=0)
    inactive_share: float = Field(
        default=0.002,
        ge=0.0,
        le=0.5,
        description="Customers with no activity snapshots at all (the point-in-time join drops them).",
    )


@dataclass(frozen=True)
class ChurnDataset:
    profiles: pd.DataFrame
    activity: pd.DataFrame
    labels: pd.DataFrame

    @property
    def entity_rows(self) -> pd.DataFrame:
        return self.labels[[ENTITY_KEY, TIMESTAMP]]


def generate(config: GeneratorConfig | None = None) -> ChurnDataset:
    cfg = config or GeneratorConfig()
    rng = np.random.default_rng(cfg.seed)
    n, d = cfg.n_customers, cfg.drift
    ids = np.arange(cfg.first_customer_id, cfg.first_customer_id + n, dtype=np.int64)

    tenure = rng.integers(1, 72, size=n)
    plan_tier = rng.choice([0, 1, 2], size=n, p=[0.5, 0.35, 0.15])
    contract = rng.choice([1, 12, 24], size=n, p=[0.55 + 0.25 * d, 0.25 - 0.1 * d, 0.20 - 0.15 * d])
    charges = np.round(
        25 + 30 * plan_tier + rng.normal(0, 8, size=n) + 20 * d * rng.random(size=n), 2
    ).clip(10, None)
    age = rng.integers(18, 80, size=n)
    profiles = pd.DataFrame(
        {
            ENTITY_KEY: ids,
            "tenure_months": tenure.astype(np.int64),
            "monthly_charges": charges.astype(np.float64),
            "plan_tier": plan_tier.astype(np.int64),
            "contract_months": contract.astype(np.int64),
            "age": age.astype(np.int64),
            TIMESTAMP: pd.Timestamp(cfg.start - timedelta(days=1)),
        }
    )

    # Per-customer engagement level, re-sampled weekly around it.
    engagement = rng.gamma(shape=2.0, scale=4.0 * (1 - 0.6 * d), size=n)
    active = rng.random(size=n) >= cfg.inactive_share
    weeks = [cfg.start + timedelta(weeks=w) for w in range(cfg.weeks)]
    frames = []
    for week_start in weeks:
        sessions = rng.poisson(engagement + 0.1)
        frames.append(
            pd.DataFrame(
                {
                    ENTITY_KEY: ids,
                    "sessions_7d": sessions.astype(np.int64),
                    "avg_session_minutes": np.round(
                        rng.lognormal(mean=2.3 - 0.5 * d, sigma=0.4, size=n), 2
                    ),
                    "support_tickets_30d": rng.poisson(0.6 + 1.8 * d, size=n).astype(np.int64),
                    "payment_failures_90d": rng.poisson(0.2 + 0.5 * d, size=n).astype(np.int64),
                    "days_since_last_login": np.minimum(
                        rng.exponential(3 + 10 * d, size=n) + (sessions == 0) * 7, 60
                    ).astype(np.int64),
                    TIMESTAMP: pd.Timestamp(week_start),
                }
            )[active]
        )
    activity = pd.concat(frames, ignore_index=True)

    # Label time: somewhere after the first snapshot, before the window ends.
    offsets = rng.uniform(1.0, 7.0 * cfg.weeks - 0.5, size=n)
    label_ts = pd.to_datetime(cfg.start) + pd.to_timedelta(offsets, unit="D")
    week_idx = np.minimum((offsets // 7).astype(int), cfg.weeks - 1)
    # The label depends on the snapshot a point-in-time join will return for that time.
    lookup = {int(w): frames[w].set_index(ENTITY_KEY) for w in range(cfg.weeks)}
    cols = ["sessions_7d", "support_tickets_30d", "payment_failures_90d", "days_since_last_login"]
    latest = np.zeros((n, len(cols)))
    for w, frame in lookup.items():
        mask = (week_idx == w) & active
        latest[mask] = frame.loc[ids[mask], cols].to_numpy()
    sessions_l, tickets_l, failures_l, idle_l = latest.T
    logit = (
        +0.6
        - (0.045 - 0.035 * d) * tenure
        + 0.02 * (charges - 50)
        - 0.9 * (contract > 1)
        - 0.12 * sessions_l
        + (0.35 + 0.6 * d) * tickets_l
        + 0.6 * failures_l
        + 0.05 * idle_l
        - 1.6 * d
    )
    churned = rng.random(size=n) < 1 / (1 + np.exp(-logit))
    labels = pd.DataFrame({ENTITY_KEY: ids, TIMESTAMP: label_ts, LABEL: churned.astype(np.int64)})
    return ChurnDataset(profiles=profiles, activity=activity, labels=labels)


def write_parquet(
    dataset: ChurnDataset, data_dir: Path, *, append: bool = False
) -> dict[str, Path]:
    """Write the three frames as Parquet sources; ``append`` adds a later batch."""
    data_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, frame in (
        ("customer_profiles", dataset.profiles),
        ("customer_activity", dataset.activity),
        ("churn_labels", dataset.labels),
    ):
        path = data_dir / f"{name}.parquet"
        frame = frame.copy()
        if name != "churn_labels":
            frame[CREATED] = frame[TIMESTAMP]
        if append and path.exists():
            frame = pd.concat([pd.read_parquet(path), frame], ignore_index=True)
        frame.to_parquet(path, index=False)
        out[name] = path
    return out
