"""End-to-end training on the demo world with a real MLflow store: runs, registry, aliases, honesty."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.build import build_features
from features.tables import DataError, load_tables
from tests.conftest import TEST_ROUNDS
from training.evaluation import METRICS
from training.pipeline import train
from training.registry import load_bundle, promote
from training.snapshots import snapshots

pytestmark = pytest.mark.slow


def test_run_registers_both_models_as_champions(trained_store):
    result = trained_store.result
    assert set(result.versions) == {"churn", "growth"}
    assert result.aliases == {"churn": "champion", "growth": "champion"}
    client = MlflowClient(trained_store.uri)
    for target, name in (("churn", "tierwise-churn"), ("growth", "tierwise-growth")):
        assert str(client.get_model_version_by_alias(name, "champion").version) == result.versions[target]
        for model in ("", "_health", "_logreg"):
            for metric in METRICS:
                assert np.isfinite(result.metrics[f"{target}{model}_{metric}"]), (target, model, metric)
        assert f"{target}_fold3_roc_auc" in result.metrics


def test_run_logs_params_fingerprint_features_plots_and_card(trained_store):
    client = MlflowClient(trained_store.uri)
    run = client.get_run(trained_store.result.run_id)
    assert run.data.params["horizon_days"] == "90"
    assert len(run.data.params["data_fingerprint"]) == 16
    assert run.data.params["data_end"] == "2026-11-01"
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"features.json", "data.json", "churn_report", "growth_report"} <= arts
    report = {a.path.split("/")[-1] for a in client.list_artifacts(run.info.run_id, "churn_report")}
    assert {"calibration.png", "lift.png", "shap_summary.png", "model_card.md", "metrics_by_fold.csv"} <= report
    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/churn_report/model_card.md")
    assert "Intended use" in card and "health score" in card and "logistic regression" in card
    features = pd.DataFrame(**mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/features.json"))
    assert "description" in features and (features["description"].str.len() > 0).all()


def test_pyfunc_model_returns_calibrated_probabilities_from_plain_strings(trained_store):
    tables = load_tables(trained_store.data_dir)
    fs = build_features(tables, [tables.data_end])
    plain = fs.frame.copy()
    for col in fs.categorical:
        plain[col] = plain[col].astype(str)  # what a caller sends: strings, not pandas categories
    plain["seats"] = plain["seats"].astype("int64")
    mlflow.set_tracking_uri(trained_store.uri)
    model = mlflow.pyfunc.load_model("models:/tierwise-churn@champion")
    p = np.asarray(model.predict(plain))
    bundle = load_bundle("tierwise-churn", trained_store.result.versions["churn"])
    assert p.shape == (len(plain),) and ((p > 0) & (p < 1)).all()
    np.testing.assert_allclose(p, bundle.predict(fs.frame), rtol=1e-12)


def test_bundles_carry_calibration_window_and_uplift(trained_store):
    churn = load_bundle("tierwise-churn", trained_store.result.versions["churn"])
    growth = load_bundle("tierwise-growth", trained_store.result.versions["growth"])
    assert set(churn.calibration) == {"a", "b"} and churn.calibration["a"] > 0
    assert churn.info["horizon_days"] == 90 and churn.info["train_last_as_of"] <= "2026-08-01"
    assert churn.info["backtest"]["lightgbm"]["roc_auc"] == pytest.approx(trained_store.result.metrics["churn_roc_auc"])
    assert 0 < growth.info["mean_uplift"] < 5
    assert set(churn.categories) == {"lifecycle_stage", "industry", "region", "plan", "segment"}


def test_no_fold_trains_on_a_label_window_that_ends_after_its_origin(trained_store):
    snap = snapshots(load_tables(trained_store.data_dir), horizon_days=90)
    as_of = snap.frame["as_of"]
    for bt in trained_store.result.backtests.values():
        assert len(bt.folds) >= 3
        for fold in bt.folds:
            assert len(fold.train) == len(as_of)  # masks over the same snapshot rows
            assert (as_of[fold.train] + pd.Timedelta(days=90) <= fold.origin).all()
            assert (as_of[fold.valid] >= fold.origin).all()
            scored = bt.predictions.loc[bt.predictions["fold"] == fold.index, "as_of"]
            assert (scored >= fold.origin).all() and len(scored) == fold.valid.sum()


def test_churn_model_beats_both_baselines_in_the_backtest(trained_store):
    m = trained_store.result.metrics
    for baseline in ("health", "logreg"):
        assert m["churn_roc_auc"] > m[f"churn_{baseline}_roc_auc"]
        assert m["churn_brier"] < m[f"churn_{baseline}_brier"]
    assert m["churn_ece"] < 0.05  # calibrated out of time: within 5 points on average


def test_retraining_is_reproducible_and_a_worse_model_only_becomes_challenger(trained_store, fresh_store):
    again = train(trained_store.data_dir, seed=0, max_rounds=TEST_ROUNDS)
    assert again.metrics == trained_store.result.metrics  # same data, same seed -> same metrics
    assert again.aliases["churn"] == "champion"  # first version in this store
    worse = train(trained_store.data_dir, seed=0, max_rounds=1)
    assert worse.aliases["churn"] == "challenger" and "worse than the champion" in worse.reasons["churn"]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("tierwise-churn", "champion").version) == again.versions["churn"]
    promote("churn", worse.versions["churn"])
    assert str(client.get_model_version_by_alias("tierwise-churn", "champion").version) == worse.versions["churn"]
    with pytest.raises(DataError, match="no version '99'"):
        promote("churn", "99")


def write_tables(folder, months: int, churn: bool) -> None:
    """A tiny book: 40 accounts with daily logins over `months` months; some leave when `churn`."""
    ids = [f"A{i}" for i in range(40)]
    start = pd.Timestamp("2024-01-01")
    end = start + pd.DateOffset(months=months)
    ends = [start + pd.DateOffset(months=3 if churn and i % 4 == 0 else 60) for i in range(40)]
    pd.DataFrame({"account_id": ids, "created_at": start}).to_csv(folder / "accounts.csv", index=False)
    pd.DataFrame({"account_id": ids, "start_date": start, "end_date": ends, "arr": 1000.0, "seats": 5}).to_csv(
        folder / "subscriptions.csv", index=False
    )
    days = pd.date_range(start, end, freq="D")
    pd.DataFrame(
        {"account_id": np.repeat(ids, len(days)), "timestamp": np.tile(days, len(ids)), "event": "login"}
    ).to_csv(folder / "events.csv", index=False)


@pytest.mark.parametrize(
    ("months", "churn", "message"),
    [(2, True, "too little history"), (12, False, "no positive churn label")],
)
def test_cli_refuses_unusable_data_with_one_clear_line(tmp_path, fresh_store, months, churn, message):
    write_tables(tmp_path, months, churn)
    proc = subprocess.run(
        [sys.executable, "-m", "tierwise", "train", "--data", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
