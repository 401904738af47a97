"""Table mode: a churn model from a flat one-row-per-account table, messy types and all."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.build import build_snapshots
from features.tables import DataError, load_tables
from training.registry import load_bundle
from training.table_mode import column_kinds, train_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flat_table(demo_dir, tmp_path_factory) -> pd.DataFrame:
    """Demo snapshots flattened the way users export them: Yes/No target, numbers as text with blanks."""
    tables = load_tables(demo_dir)
    fs = build_snapshots(tables, pd.date_range("2025-06-01", "2026-06-01", freq="3MS"), 90)
    cols = [
        "activity__users_30d",
        "activity__days_since_last",
        "seat_utilisation",
        "login__trend_30d",
        "support_ticket__count_30d",
        "days_to_renewal",
        "arr",
        "plan",
        "segment",
    ]
    flat = fs.frame[cols].copy()
    flat.insert(0, "customer", fs.frame["account_id"] + "@" + fs.frame["as_of"].dt.strftime("%Y%m"))
    flat["Churn"] = np.where(fs.frame["churn"] == 1, "Yes", "No")
    text = flat["seat_utilisation"].round(3).astype(str)
    flat["seat_utilisation"] = text.where(flat["seat_utilisation"].notna() & (np.arange(len(flat)) % 9 > 0), " ")
    for col in ("plan", "segment"):
        flat[col] = flat[col].astype(str)
    return flat


def test_table_mode_trains_registers_and_scores_the_raw_table(flat_table, fresh_store):
    path = fresh_store / "book.csv"
    flat_table.to_csv(path, index=False)
    result = train_table(path, target="Churn", id_col="customer", max_rounds=200)
    assert result.aliases == {"churn": "champion"}
    assert str(MlflowClient().get_model_version_by_alias("tierwise-churn-table", "champion").version) == "1"
    m = result.metrics
    assert m["churn_table_roc_auc"] > 0.7 and m["churn_table_roc_auc"] > m["churn_table_health_roc_auc"]
    # the plain baseline runs on the obvious columns the table has (arr, days_to_renewal, a 30-day count)
    lift = m["churn_table_roc_auc"] - m["churn_table_plain_gbm_roc_auc"]
    assert m["churn_table_lift_over_plain_gbm_roc_auc"] == pytest.approx(lift)
    assert len(result.backtests["churn"].folds) == 5
    bundle = load_bundle("tierwise-churn-table", "1")
    assert "customer" not in bundle.features and "Churn" not in bundle.features
    raw = pd.read_csv(path)  # as the scorer will read it: text column with blanks, strings
    assert raw["seat_utilisation"].dtype != float
    p = bundle.predict(raw)
    assert ((p > 0) & (p < 1)).all() and p.mean() == pytest.approx((raw["Churn"] == "Yes").mean(), abs=0.05)
    pyfunc = mlflow.pyfunc.load_model("models:/tierwise-churn-table@champion")
    np.testing.assert_allclose(np.asarray(pyfunc.predict(raw)), p)
    # the event-based registry entries are untouched
    assert not MlflowClient().search_registered_models(filter_string="name = 'tierwise-churn'")


def test_table_mode_names_missing_columns_and_bad_targets(flat_table, tmp_path):
    with pytest.raises(DataError, match="no column 'churned'"):
        train_table(flat_table, target="churned", id_col="customer")
    bad = flat_table.assign(Churn=flat_table["Churn"].where(flat_table.index != 3, "perhaps"))
    with pytest.raises(DataError, match="row 3: 'perhaps'"):
        train_table(bad, target="Churn", id_col="customer")
    with pytest.raises(DataError, match="does not exist"):
        train_table(tmp_path / "nope.csv", target="Churn", id_col="customer")


def test_ids_and_dates_in_a_flat_table_never_become_categories():
    n = 200
    frame = pd.DataFrame(
        {
            "signed_up": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),  # text dates
            "crm_ref": [f"CRM-{i:05d}" for i in range(n)],  # one value per row
            "plan": np.where(np.arange(n) % 3 == 0, "pro", "basic"),
            "usage": np.arange(n).astype(str),  # numbers arriving as text
        }
    )
    features, categorical, dropped = column_kinds(frame)
    assert sorted(dropped) == ["crm_ref", "signed_up"]
    assert features == ["plan", "usage"] and categorical == ["plan"]
