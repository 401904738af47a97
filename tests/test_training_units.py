"""Unit tests of the training building blocks: metrics, calibration, folds, baselines, labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.tables import DataError
from training import calibration
from training.backtest import late_slice, rolling_folds
from training.baselines import HealthScore
from training.evaluation import arr_recall_top_k, evaluate, expected_calibration_error, lift_top_decile
from training.registry import Comparison, verdict
from training.table_mode import churn_labels, column_kinds


def monthly_as_of(months: int, per_month: int = 20) -> pd.Series:
    dates = pd.date_range("2023-01-01", periods=months, freq="MS")
    return pd.Series(np.repeat(dates, per_month))


def test_rolling_folds_train_only_on_closed_label_windows():
    as_of = monthly_as_of(30)
    folds = rolling_folds(as_of, gap_days=90)
    assert len(folds) == 3
    origins = [f.origin for f in folds]
    assert origins == sorted(origins)
    for fold in folds:
        assert (as_of[fold.train] + pd.Timedelta(days=90) <= fold.origin).all()
        assert (as_of[fold.valid] >= fold.origin).all()
        assert not (fold.train & fold.valid).any()
    # validation blocks tile the last months without overlap
    assert sum(f.valid.sum() for f in folds) == len(set(np.flatnonzero(np.any([f.valid for f in folds], axis=0))))


def test_too_little_history_for_a_backtest_is_a_data_error():
    with pytest.raises(DataError, match="too little history"):
        rolling_folds(monthly_as_of(4), gap_days=90)


def test_late_slice_keeps_a_label_gap():
    as_of = monthly_as_of(24)
    mask = np.ones(len(as_of), bool)
    earlier, later = late_slice(as_of, mask, gap_days=90)
    assert later.any() and earlier.any()
    assert (as_of[earlier] + pd.Timedelta(days=90) <= as_of[later].min()).all()


def test_metrics_on_known_cases():
    y = np.array([0] * 90 + [1] * 10)
    perfect = y.astype(float)
    m = evaluate(y, np.clip(perfect, 0.01, 0.99), np.full(100, 10.0), np.zeros(100))
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0
    assert m["lift_top_decile"] == pytest.approx(10.0)
    assert m["arr_recall_top_k"] == 1.0  # K = 10 of 100, exactly the 10 churners
    assert expected_calibration_error(y, np.full(100, 0.1)) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.4)
    assert lift_top_decile(y, np.zeros(100)) == pytest.approx(0.0)  # ties keep order: top decile all zeros


def test_arr_recall_ranks_by_value_at_stake_per_date():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.2, 0.9, 0.5, 0.1])
    arr = np.array([1000.0, 10.0, 10.0, 10.0])
    groups = np.array([0, 0, 1, 1])
    # date 0: p*arr picks the big churner (200 > 9); date 1: picks the churner
    assert arr_recall_top_k(y, p, arr, groups, capacity=1) == 1.0
    assert arr_recall_top_k(y, p, arr, np.zeros(4), capacity=1) == pytest.approx(1000 / 1010)


def test_platt_recovers_a_known_link():
    rng = np.random.default_rng(0)
    margin = rng.normal(0, 2, 20000)
    y = (rng.random(20000) < calibration.apply({"a": 0.5, "b": -1.0}, margin)).astype(int)
    fit = calibration.platt(margin, y)
    assert fit["a"] == pytest.approx(0.5, abs=0.05) and fit["b"] == pytest.approx(-1.0, abs=0.08)


def test_health_score_ranks_unhealthy_accounts_higher():
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"activity__days_since_last": rng.exponential(10, 2000), "seat_utilisation": rng.random(2000)})
    risk = 1 / (1 + np.exp(-(0.1 * X["activity__days_since_last"] - 2 * X["seat_utilisation"] - 1)))
    y = (rng.random(2000) < risk).astype(int)
    p = HealthScore().fit(X, y).predict_proba(X)
    assert evaluate(y, p, np.ones(2000), np.zeros(2000))["roc_auc"] > 0.7


def test_champion_rule_needs_both_ranking_and_calibration():
    old = {"roc_auc": 0.80, "brier": 0.10}
    assert verdict(Comparison({"roc_auc": 0.80, "brier": 0.10}, old, "same"))[0] == "champion"
    alias, reason = verdict(Comparison({"roc_auc": 0.85, "brier": 0.12}, old, "same"))
    assert alias == "challenger" and "brier 0.1200 vs champion 0.1000" in reason
    assert verdict(None)[0] == "challenger"


def test_churn_labels_accept_common_spellings_and_name_bad_rows():
    assert churn_labels(pd.Series(["Yes", "no", "TRUE", "false", "1", "0"]), "Churn").tolist() == [1, 0, 1, 0, 1, 0]
    with pytest.raises(DataError, match="row 1: 'maybe'"):
        churn_labels(pd.Series(["yes", "maybe", "no"]), "Churn")
    with pytest.raises(DataError, match="no positive"):
        churn_labels(pd.Series(["no", "no"]), "Churn")


def test_column_kinds_turn_numeric_text_with_blanks_into_numbers():
    frame = pd.DataFrame(
        {
            "charges": ["29.85", " ", "108.15", ""] * 30,
            "contract": ["monthly", "annual", "monthly", "two-year"] * 30,
            "email": [f"u{i}@x.com" for i in range(120)],
            "tenure": [1, 5, 7, 9] * 30,
        }
    )
    features, categorical, dropped = column_kinds(frame)
    assert features == ["charges", "contract", "tenure"]
    assert categorical == ["contract"]
    assert dropped == ["email"]


def test_tuning_searches_inside_the_training_window_only():
    from training import model
    from training.tuning import tune

    rng = np.random.default_rng(2)
    as_of = monthly_as_of(24, per_month=60)
    X = pd.DataFrame({"a": rng.normal(size=len(as_of)), "b": rng.normal(size=len(as_of))})
    y = (rng.random(len(as_of)) < 1 / (1 + np.exp(-(X["a"] * 2 - 2)))).astype(int).to_numpy()
    train = (as_of < "2024-06-01").to_numpy()
    X_poisoned = X.copy()
    X_poisoned.loc[~train, "a"] = np.nan  # rows outside the window must not matter
    best = tune(X, y, as_of, train, 90, model.params_for(0), n_trials=3, seed=0, max_rounds=50)
    again = tune(X_poisoned, y, as_of, train, 90, model.params_for(0), n_trials=3, seed=0, max_rounds=50)
    assert set(best) == {"learning_rate", "num_leaves", "min_child_samples", "feature_fraction", "lambda_l2"}
    assert best == again
