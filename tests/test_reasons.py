"""Reasons for CSMs: exact SHAP grouped into drivers, worded with the account's values."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import shap

from features.build import build_features
from features.tables import load_tables
from serving import reasons as rs
from serving.registry import load_models
from serving.scoring import REASONS, score_frame


def test_change_reads_as_up_or_down_with_the_period():
    text = rs.worded("change", "change in active users, last 30 days vs the 30 before", -0.45)
    assert text == "Active users down 45% (last 30 days vs the 30 before)"
    assert rs.worded("change", "change in ARR over the last 90 days", 0.2) == "ARR up 20% over the last 90 days"
    assert rs.worded("change", "change in logins, last 30 days vs the 30 before", float("nan")).startswith(
        "Logins with nothing to compare against"
    )


def test_values_are_worked_into_the_description():
    assert rs.worded("percent", "seat utilisation (active users in 30 days / seats)", 0.92) == (
        "Seat utilisation 92% (active users in 30 days / seats)"
    )
    assert (
        rs.worded("number_first", "support tickets in the last 30 days", 3.0) == "3 support tickets in the last 30 days"
    )
    assert rs.worded("number_first", "logins in the last 30 days", float("nan")) == "No logins in the last 30 days"
    assert rs.worded("days_since_last", "days since any activity", float("nan"), 365) == (
        "Days since any activity: more than 365 days"
    )
    assert rs.worded("category", "plan", "growth") == "Plan: growth"
    assert rs.worded("money", "annual recurring revenue", 12500.0) == "Annual recurring revenue 12,500"


def test_points_are_signed_with_a_true_minus_and_small_moves_stay_visible():
    assert rs.signed_points(12.4) == "+12"
    assert rs.signed_points(-4.2) == "\u22124"
    assert rs.signed_points(0.04) == "+0.04"


@pytest.fixture(scope="module")
def explained(trained_store):
    """The champion models, the demo book's features at the data end, and one churn explanation."""
    models = load_models()
    tables = load_tables(trained_store.data_dir)
    frame = build_features(tables, [tables.data_end], metrics=models.churn.metrics).frame
    A = models.churn.array(frame)
    points, base, prob = models.churn.contributions(A)
    return models, frame, A, points, base, prob, rs.drivers(models.churn, A, points, "risk")


@pytest.mark.slow
def test_family_points_add_up_to_risk_minus_base(explained):
    models, frame, X, points, base, prob, drivers = explained
    assert np.allclose(drivers.family_points.sum(axis=1), 100 * (prob - base), atol=1e-8)
    assert np.allclose(prob, models.churn.predict(frame))
    # families really group: each driver is the sum of its features' points
    members = [i for i, f in enumerate(models.churn.features) if models.churn.families.get(f, f) == "active_users"]
    assert len(members) > 1
    assert np.allclose(drivers.family_points["active_users"], 100 * points[:, members].sum(axis=1))


@pytest.mark.slow
def test_points_come_from_the_same_shap_values_as_tree_explainer(explained):
    models, frame, _, points, base, prob, _ = explained
    rows = models.churn.matrix(frame.iloc[:5])  # a categorical DataFrame, as TreeExplainer users pass it
    exact = shap.TreeExplainer(models.churn.booster).shap_values(rows)
    exact = exact[1] if isinstance(exact, list) else exact
    margin = exact.sum(axis=1) + models.churn.booster.predict(rows, pred_contrib=True)[:, -1]
    # our points are the margin SHAP values scaled by one factor per row: (prob - base) / (margin - bias)
    scale = (prob[:5] - base[:5]) / exact.sum(axis=1)
    assert np.allclose(points[:5], exact * scale[:, None], atol=1e-10)
    assert np.allclose(models.churn.calibrate(margin), prob[:5])


@pytest.mark.slow
def test_drivers_are_the_largest_worded_with_values_both_ways_and_flagged(explained):
    models, frame, _, _, _, _, drivers = explained
    size = np.abs(drivers.points)
    assert (size[:, :-1] >= size[:, 1:] - 1e-12).all()  # sorted by size within each row
    biggest = drivers.family_points.abs().max(axis=1).to_numpy()
    assert np.allclose(size[:, 0], biggest)
    texts = [t for t in drivers.text.ravel() if t]
    assert any("pts risk" in t and "+" in t for t in texts) and any("\u2212" in t for t in texts)
    worded = [t.split(" (")[0] for t in texts]
    assert all(any(ch.isdigit() for ch in w) or ": " in w or "unchanged" in w or "compare" in w for w in worded)
    kept = drivers.feature != ""
    expected = np.vectorize(lambda f: bool(models.churn.actionable.get(f, False)))(drivers.feature[kept])
    assert (drivers.actionable[kept] == expected).all() and (~expected).any()
    flagged = np.array(["not actionable" in t for t in drivers.text[kept]])
    assert (flagged == ~expected).all()
    usage = drivers.feature == "activity__users_30d"
    if usage.any():  # the value shown is the account's own
        row = np.nonzero(usage)[0][0]
        shown = drivers.text[usage][0]
        assert f"{frame['activity__users_30d'].iloc[row]:,.0f} active users" in shown


@pytest.mark.slow
def test_scored_rows_carry_churn_and_growth_reasons_as_json(explained):
    models, frame, *_ = explained
    scored = score_frame(frame, models)
    first = json.loads(scored["reasons_json"].iloc[0])
    assert [d["text"] for d in first["churn"]] == [t for t in scored[REASONS].iloc[0] if isinstance(t, str)]
    assert first["growth"] and all("pts growth" in d["text"] for d in first["growth"])
    assert scored["growth_reason_1"].iloc[0] == first["growth"][0]["text"]
    points = sum(first["churn_families"].values()) / 100
    base = models.churn.calibrate(
        models.churn.booster.predict(models.churn.matrix(frame.iloc[:1]), pred_contrib=True)[:, -1]
    )
    assert math.isclose(points, scored["churn_risk"].iloc[0] - base[0], abs_tol=1e-3)
    assert {"driver", "feature", "text", "points", "value", "actionable"} <= set(first["churn"][0])
    assert scored["reason_1"].notna().mean() > 0.95
    assert isinstance(pd.Series(scored["reason_1"]).iloc[0], str)
