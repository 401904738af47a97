"""Model behaviour tests on the trained churn model: it reacts to what should matter, and only to that."""

from __future__ import annotations

import numpy as np
import pytest

from features.build import build_features
from features.tables import load_tables
from training.registry import load_bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def churn_and_rows(trained_store):
    tables = load_tables(trained_store.data_dir)
    rows = build_features(tables, [tables.data_end]).frame
    return load_bundle("tierwise-churn", trained_store.result.versions["churn"]), rows


def test_more_recent_usage_lowers_risk(churn_and_rows):
    bundle, rows = churn_and_rows
    recency = [c for c in bundle.features if c.endswith("__days_since_last") and not c.startswith(("nps", "support"))]
    stale, recent = rows.copy(), rows.copy()
    stale[recency] = 60.0
    recent[recency] = 1.0
    assert bundle.predict(recent).mean() < bundle.predict(stale).mean()


def test_collapsing_active_users_raises_risk(churn_and_rows):
    bundle, rows = churn_and_rows
    collapsed = rows.copy()
    users = [c for c in bundle.features if "users_" in c and "prior" not in c and "trend" not in c]
    collapsed[users] = 0.0
    collapsed["seat_utilisation"] = 0.0
    collapsed["activity__users_trend_30d"] = -1.0
    before, after = bundle.predict(rows), bundle.predict(collapsed)
    assert after.mean() > before.mean()
    assert (after >= before - 1e-9).mean() > 0.7  # most accounts, not just on average


def test_irrelevant_extra_column_and_column_order_change_nothing(churn_and_rows):
    bundle, rows = churn_and_rows
    noisy = rows.assign(favourite_colour=np.random.default_rng(0).choice(["red", "blue"], len(rows)))
    shuffled = noisy[list(reversed(noisy.columns))]
    np.testing.assert_array_equal(bundle.predict(shuffled), bundle.predict(rows))


def test_risk_is_calibrated_on_the_out_of_time_rows(trained_store):
    predictions = trained_store.result.backtests["churn"].predictions
    assert predictions["p"].mean() == pytest.approx(predictions["y"].mean(), abs=0.02)
