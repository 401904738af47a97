"""The plain gradient-boosting baseline: its features, its place in every backtest, the lift and the warning."""

from __future__ import annotations

import copy

import mlflow
import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from sklearn.metrics import roc_auc_score

from training.backtest import scores
from training.baselines import baseline_predictions, plain_features
from training.pipeline import finish
from training.publish import Fitted, Published
from training.report import metrics_frame, plain_baseline_note, plain_baseline_warnings


def test_plain_features_follow_any_event_vocabulary():
    columns = [
        "arr",
        "seats",
        "tenure_days",
        "days_to_renewal",
        "widget_clicked__count_30d",
        "widget_clicked__count_90d",
        "widget_clicked__count_7d",
        "widget_clicked__users_30d",
        "seat_utilisation",
        "plan",
        "invoice_paid__count_90d",
    ]
    assert plain_features(columns) == [
        "arr",
        "seats",
        "tenure_days",
        "days_to_renewal",
        "widget_clicked__count_30d",
        "widget_clicked__count_90d",
        "invoice_paid__count_90d",
    ]
    assert plain_features(["Churn", "revenue", "plan"]) == []


def signal_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose outcome follows an event count the plain baseline sees, with missing values and a category."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "arr": rng.lognormal(9, 1, n),
            "widget_clicked__count_30d": rng.poisson(5, n).astype(float),
            "plan": pd.Categorical(rng.choice(["a", "b"], n)),
            "seat_utilisation": rng.uniform(0, 1, n),
        }
    )
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(X["widget_clicked__count_30d"] - 4))).astype(int)
    X.loc[X.index[::7], "arr"] = np.nan  # missing values are the baseline's own business
    return X, y


def test_plain_baseline_learns_from_the_obvious_columns_only():
    X, y = signal_frame(3000, 0)
    X_val, y_val = signal_frame(1000, 1)
    out = baseline_predictions(X, y, X_val, ["plan"])
    assert set(out) == {"health", "logreg", "plain_gbm"}
    assert out["plain_gbm"].shape == (1000,) and ((out["plain_gbm"] > 0) & (out["plain_gbm"] < 1)).all()
    assert roc_auc_score(y_val, out["plain_gbm"]) > 0.75
    # the same fit whatever the non-obvious columns say: they are not its features
    shuffled = X_val.assign(seat_utilisation=X_val["seat_utilisation"].sample(frac=1, random_state=2).to_numpy())
    again = baseline_predictions(X, y, shuffled, ["plan"])
    np.testing.assert_array_equal(again["plain_gbm"], out["plain_gbm"])
    assert "plain_gbm" not in baseline_predictions(X[["plan", "seat_utilisation"]], y, X_val, ["plan"])


def predictions(p: np.ndarray, plain: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    n = len(y)
    return pd.DataFrame({"y": y, "p": p, "plain_gbm": plain, "arr": np.full(n, 100.0), "as_of": np.zeros(n)})


def test_scores_record_the_lift_over_the_plain_baseline_and_the_warning_names_the_loss():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    sharp, blurred = y + rng.normal(0, 0.5, 2000), y + rng.normal(0, 2.0, 2000)
    to_p = lambda s: 1 / (1 + np.exp(-s))  # noqa: E731
    winning = scores(predictions(to_p(sharp), to_p(blurred), y), None)
    ours, plain = winning["lightgbm"], winning["plain_gbm"]
    for m in ("roc_auc", "pr_auc"):
        assert ours[f"lift_over_plain_gbm_{m}"] == pytest.approx(ours[m] - plain[m]) and ours[m] > plain[m]
    assert plain_baseline_warnings("churn", winning) == []
    losing = scores(predictions(to_p(blurred), to_p(sharp), y), None)
    (line,) = plain_baseline_warnings("growth", losing)
    assert line.startswith("growth: the model does not beat the plain gradient-boosting baseline")
    assert f"ROC AUC {losing['lightgbm']['roc_auc']:.3f} vs {losing['plain_gbm']['roc_auc']:.3f}" in line
    assert "PR AUC" in line
    (absent,) = plain_baseline_warnings(
        "churn", scores(predictions(to_p(sharp), to_p(blurred), y).drop(columns="plain_gbm"), None)
    )
    assert "no plain gradient-boosting baseline" in absent and "days_to_renewal" in absent
    assert plain_baseline_note({"lightgbm": {}}).startswith(
        "No plain gradient-boosting baseline ran: the data has none"
    )
    assert "roc auc +" in plain_baseline_note(winning) and "pr auc +" in plain_baseline_note(winning)


@pytest.mark.slow
def test_every_backtest_reports_the_plain_baseline_and_the_run_logs_the_lift(trained_store):
    result = trained_store.result
    m = result.metrics
    for target in ("churn", "growth"):
        bt = result.backtests[target]
        assert "plain_gbm" in bt.predictions and bt.predictions["plain_gbm"].between(0, 1).all()
        assert set(bt.overall) == {"lightgbm", "health", "logreg", "plain_gbm"}
        for metric in ("roc_auc", "pr_auc"):
            lift = m[f"{target}_lift_over_plain_gbm_{metric}"]
            assert lift == pytest.approx(m[f"{target}_{metric}"] - m[f"{target}_plain_gbm_{metric}"])
            for fold in bt.fold_metrics:
                assert f"{target}_fold{fold}_plain_gbm_{metric}" in m
        table = metrics_frame(bt.fold_metrics, bt.overall)
        assert (table["model"] == "plain GBM").sum() == len(bt.folds) + 1
    card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/growth_report/model_card.md")
    assert "| plain GBM |" in card
    assert f"roc auc {m['growth_lift_over_plain_gbm_roc_auc']:+.4f}" in card


@pytest.mark.slow
def test_train_summary_warns_when_a_model_does_not_beat_the_plain_baseline(trained_store):
    result = trained_store.result
    bt = copy.deepcopy(result.backtests["growth"])
    bt.predictions["p"] = bt.predictions["plain_gbm"].sample(frac=1, random_state=0).to_numpy()  # a useless model
    bt.overall = scores(bt.predictions, None)
    table = metrics_frame(bt.fold_metrics, bt.overall)
    published = {"growth": Published("tierwise-growth", "9", "challenger", "a test", {}, table)}
    console = Console(record=True, width=400)
    finish("run", {"growth": Fitted(result.bundles["growth"], bt, None, None)}, published, console)
    text = console.export_text()
    assert "warning: growth: the model does not beat the plain gradient-boosting baseline" in text
    assert f"ROC AUC {bt.overall['lightgbm']['roc_auc']:.3f} vs {bt.overall['plain_gbm']['roc_auc']:.3f}" in text
