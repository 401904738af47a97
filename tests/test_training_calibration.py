"""The model that ships is calibrated on rows it did not learn from, and its calibration is measured later."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.tables import DataError, load_tables
from serving.registry import load_models
from tests.conftest import TEST_ROUNDS
from training import model
from training.calibration import platt
from training.evaluation import evaluate
from training.registry import load_bundle
from training.shipped import fit_shipped, holdout
from training.snapshots import snapshots

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def snap(demo_dir):
    return snapshots(load_tables(demo_dir))


def test_shipped_calibration_comes_from_a_booster_that_never_saw_the_calibration_period(snap):
    frame, X, y = snap.frame, snap.features.matrix, snap.frame["churn"].to_numpy(int)
    params, every = model.params_for(0), np.ones(len(y), bool)
    shipped = fit_shipped(X, y, frame["as_of"], every, snap.window_days, params, TEST_ROUNDS)
    as_of, stop, cal = frame["as_of"], shipped.stop_rows, shipped.calibration_rows
    assert stop.any() and cal.any() and not (stop & cal).any()
    assert (as_of[stop] + pd.Timedelta(days=snap.window_days) <= as_of[cal].min()).all()
    assert as_of[cal].max() == as_of.max()  # the last labelled period
    # the Platt map is the fit of a booster stopped on the period, trained only on rows before it
    stopped = model.fit_early_stopped(X[stop], y[stop], X[cal], y[cal], params, TEST_ROUNDS)
    assert (stopped.best_iteration or stopped.current_iteration()) == shipped.rounds <= TEST_ROUNDS
    margin = stopped.predict(X[cal], raw_score=True, num_iteration=shipped.rounds)
    assert shipped.calibration == pytest.approx(platt(margin, y[cal]))
    # the booster that ships is refitted on every row with those rounds
    assert shipped.booster.num_trees() == shipped.rounds
    refit = model.fit(X, y, params, shipped.rounds)
    np.testing.assert_allclose(shipped.booster.predict(X, raw_score=True), refit.predict(X, raw_score=True))


def test_holdout_scores_the_reproduced_recipe_on_rows_after_everything_it_used(snap):
    frame, X, y = snap.frame, snap.features.matrix, snap.frame["churn"].to_numpy(int)
    last = snap.folds()[-1]
    facts, predictions = holdout(X, y, frame, last, snap.window_days, model.params_for(0), TEST_ROUNDS)
    assert len(predictions) == facts["rows"] == last.valid.sum()
    assert (predictions["as_of"] >= last.origin).all()
    assert pd.Timestamp(facts["first_as_of"]) >= last.origin
    # the recipe's calibration period itself closed before the untouched rows begin
    assert pd.Timestamp(facts["recipe_calibration_as_of"]) + pd.Timedelta(days=snap.window_days) <= last.origin
    assert pd.Timestamp(facts["recipe_stop_last_as_of"]) < pd.Timestamp(facts["recipe_calibration_as_of"])
    scored = evaluate(predictions["y"], predictions["p"], np.ones(len(predictions)), predictions["as_of"])
    assert facts["ece"] == pytest.approx(scored["ece"]) and facts["brier"] == pytest.approx(scored["brier"])
    assert facts["positives"] == predictions["y"].sum()
    assert 0 <= facts["ece"] < 0.05


def test_fit_shipped_refuses_rows_without_a_positive(snap):
    frame, X = snap.frame, snap.features.matrix
    with pytest.raises(DataError, match="no positive label"):
        fit_shipped(
            X,
            np.zeros(len(frame), int),
            frame["as_of"],
            np.ones(len(frame), bool),
            snap.window_days,
            model.params_for(0),
            5,
        )


def test_run_logs_the_shipped_calibration_and_the_bundle_carries_it(trained_store):
    result = trained_store.result
    client = MlflowClient(trained_store.uri)
    run = client.get_run(result.run_id)
    for target in ("churn", "growth"):
        bundle = load_bundle(f"tierwise-{target}", result.versions[target])
        held = bundle.info["shipped_calibration"]
        assert run.data.metrics[f"{target}_shipped_ece"] == pytest.approx(held["ece"])
        assert run.data.metrics[f"{target}_shipped_brier"] == pytest.approx(held["brier"])
        assert run.data.metrics[f"{target}_shipped_rows"] == held["rows"] > 0
        assert held["first_as_of"] >= bundle.info["fold_origins"][-1]
        assert bundle.info["calibration_first_as_of"] <= bundle.info["train_last_as_of"]
        assert bundle.booster.num_trees() == bundle.info["rounds"]
        report = {a.path.split("/")[-1] for a in client.list_artifacts(run.info.run_id, f"{target}_report")}
        assert {"shipped_calibration.png", "shipped_calibration.json"} <= report
        mlflow.set_tracking_uri(trained_store.uri)
        card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{target}_report/model_card.md")
        assert f"expected calibration error {held['ece']:.3f}" in card
        assert f"snapshots from {bundle.info['calibration_first_as_of']} on" in card


def test_report_states_the_measured_calibration_of_the_model_that_scored_the_book(book_report):
    models = load_models()
    text = book_report.read_text()
    section = text[text.index('id="calibration"') : text.index('id="top-accounts"')]
    held = models.churn.info["shipped_calibration"]
    assert f"<strong>{100 * held['ece']:.1f} points</strong>" in section
    assert f"from {held['first_as_of']} to {held['last_as_of']}" in section
    assert f"Brier {held['brier']:.3f}" in section
