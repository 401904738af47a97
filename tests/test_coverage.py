"""The tier policy replayed on the backtest: shares of realised churned and expansion ARR, by hand and on a real run."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.errors import DataError
from features.policy import DEFAULT_POLICY, load_policy
from features.subscriptions import subscription_features
from features.tables import load_tables
from serving.registry import load_models
from serving.report import write_report
from tierwise.demo import sized_policy
from training.backtest import Backtest
from training.coverage import STRATEGIES, replay, replay_rows

# Five accounts on two as-of dates (fold 1, then fold 2). One place per pool, hysteresis margin 0.5.
#   date 1: a (value at stake 500) wins high touch, d (onboarding, 50) the onboarding place, b (300) mid touch;
#           c and e (onboarding, left over) are tech touch. a and d churn, b grows by 200.
#   date 2: c rises to 310 (not 50% above b's 300) and e to 60 (not 50% above d's 50): with hysteresis b and d
#           keep their places, without it c and e take them. c churns (2,000 ARR) and e grows by 30.
BOOK = pd.DataFrame(
    {
        "account_id": list("abcde") * 2,
        "as_of": pd.to_datetime(["2026-01-01"] * 5 + ["2026-02-01"] * 5),
        "fold": [1] * 5 + [2] * 5,
        "arr": [1000.0, 800.0, 2000.0, 100.0, 50.0] * 2,
        "arr_at_risk": [500.0, 300.0, 100.0, 50.0, 40.0, 500.0, 300.0, 310.0, 50.0, 60.0],
        "expected_expansion": 0.0,
        "lifecycle_stage": ["established"] * 3 + ["onboarding"] * 2 + ["established"] * 3 + ["onboarding"] * 2,
        "churned_arr": [1000.0, 0, 0, 100.0, 0, 0, 0, 2000.0, 0, 0],
        "expansion_arr": [0, 200.0, 0, 0, 0, 0, 0, 0, 0, 30.0],
    }
)


@pytest.fixture(scope="module")
def result():
    policy = dataclasses.replace(
        load_policy(), capacity={"high_touch": 1, "mid_touch": 1, "onboarding": 1}, hysteresis_margin=0.5
    )
    return replay(BOOK, policy)


def test_coverage_shares_equal_a_hand_count(result):
    expected = {  # (churned, expansion, value) shares, counted by hand from the comment above
        ("fold 1", "policy"): (1100 / 1100, 200 / 200, 1300 / 1300),
        ("fold 2", "policy"): (0 / 2000, 0 / 30, 0 / 2030),
        ("overall", "policy"): (1100 / 3100, 200 / 230, 1300 / 3330),
        ("overall", "no_hysteresis"): (1.0, 1.0, 1.0),
        ("overall", "perfect"): (1.0, 1.0, 1.0),
        # ARR only: c, a, b on both dates (d churned 100 and e grew 30 outside it)
        ("overall", "arr_only"): (3000 / 3100, 200 / 230, 3200 / 3330),
        # the model's ranking without pools: a, b, c on date 1; a, c, b on date 2
        ("overall", "ranking"): (3000 / 3100, 200 / 230, 3200 / 3330),
    }
    for (scope, strategy), shares in expected.items():
        got = [result.share(scope, strategy, v) for v in ("churned", "expansion", "value")]
        assert got == pytest.approx(shares), (scope, strategy)
    assert result.share("overall", "policy", "places") == 3
    assert result.vs_perfect() == pytest.approx(1300 / 3330)
    # no account changed tier with hysteresis; without it b, c, d and e all did on date 2 (4 of 5)
    assert result.flip_rate == {"policy": 0.0, "no_hysteresis": pytest.approx(0.8)}


def test_metrics_name_each_fold_strategy_and_value(result):
    metrics = result.metrics()
    assert metrics["coverage_policy_value"] == pytest.approx(1300 / 3330)
    assert metrics["coverage_fold1_policy_value"] == pytest.approx(1.0)
    assert metrics["coverage_fold2_arr_only_churned"] == pytest.approx(1.0)
    assert metrics["coverage_hysteresis_cost"] == pytest.approx(1 - 1300 / 3330)
    assert metrics["tier_flip_rate_no_hysteresis"] == pytest.approx(0.8)
    record = result.record()
    assert record["policy"]["capacity"] == {"high_touch": 1, "mid_touch": 1, "onboarding": 1}
    assert {r["strategy"] for r in record["table"]} == set(STRATEGIES)


def test_training_logs_the_replay_with_the_run_and_the_report_shows_it(trained_store, tmp_path):
    run = trained_store.result
    cov = run.coverage
    assert cov is not None and cov.policy.source.endswith("serving/tiers.yaml")
    for scope in cov.scopes():
        # perfect foresight is the ceiling for any pick of the same number of accounts
        for strategy in ("policy", "no_hysteresis", "ranking", "arr_only"):
            assert cov.share(scope, strategy) <= cov.share(scope, "perfect") + 1e-9
    mlflow.set_tracking_uri(trained_store.uri)
    client = MlflowClient()
    logged = client.get_run(run.run_id).data
    assert logged.metrics["coverage_policy_value"] == pytest.approx(cov.share("overall", "policy"))
    assert logged.metrics["coverage_fold1_perfect_value"] == pytest.approx(cov.share("fold 1", "perfect"))
    assert logged.params["capacity_onboarding"] == str(load_policy().capacity["onboarding"])
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"coverage.json", "tier_policy"} <= artifacts
    assert np.isfinite(cov.vs_perfect())


def test_report_shows_what_the_capacity_covered_on_the_scoring_models_backtest(trained_store, book_report, tmp_path):
    models = load_models()
    path, text = book_report.with_name("scores.parquet"), book_report.read_text()
    section = text[text.index("What this capacity covered last time") : text.index('id="renewals"')]
    cov = trained_store.result.coverage
    assert f"churn model v{models.churn_version}" in section
    assert f"held <strong>{cov.vs_perfect():.0%}</strong> of what" in section
    for strategy, label in STRATEGIES.items():
        row = section[section.index(f"<td>{label}</td>") :]
        row = row[: row.index("</tr>")]
        shares = [f"{cov.share(s, strategy):.0%}" for s in cov.scopes() if s != "overall"]
        shares += [f"{cov.share('overall', strategy, v):.0%}" for v in ("churned", "expansion", "value")]
        assert re.findall(r">(\d+%)<", row) == shares, strategy
    assert "That capacity differs" not in section  # scored and replayed with the shipped policy
    other = tmp_path / "other.yaml"
    other.write_text(DEFAULT_POLICY.read_text().replace("csms: 8", "csms: 9"))
    assert "That capacity differs" in write_report(path, tmp_path / "other.html", other).read_text()


def test_train_refuses_a_bad_policy_before_reading_any_data(tmp_path):
    bad = tmp_path / "tiers.yaml"
    bad.write_text(DEFAULT_POLICY.read_text().replace("accounts_per_csm: 80", "accounts_per_csm: -80"))
    cli = [sys.executable, "-c", "from tierwise.cli import main; main()", "train"]
    args = ["--data", str(tmp_path / "nowhere"), "--policy", str(bad)]
    done = subprocess.run([*cli, *args], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "capacity.onboarding.accounts_per_csm" in done.stderr


def test_demo_policy_is_sized_for_its_book(demo_dir, tmp_path):
    tables = load_tables(demo_dir)
    path = tmp_path / "tiers.yaml"
    path.write_text(sized_policy(tables))
    policy = load_policy(path)
    book = subscription_features(tables, pd.DatetimeIndex([tables.data_end]))
    onboarding = int((book["lifecycle_stage"] == "onboarding").sum())
    # every first-term account has an onboarding place, and the retention pools scale with the book
    assert onboarding <= policy.capacity["onboarding"] < onboarding + policy.per_csm["onboarding"]
    assert policy.capacity["high_touch"] >= 0.05 * len(book)
    assert policy.capacity["mid_touch"] >= 0.20 * (len(book) - onboarding)
    assert policy.hysteresis_margin == load_policy().hysteresis_margin  # only the staffing changes


def test_backtests_on_different_rows_are_refused():
    rows = BOOK.assign(p=0.1, y=0)
    churn = Backtest("churn", [], rows, {}, {})
    growth = Backtest("growth", [], rows.iloc[:-1], {}, {})  # one (account_id, as_of) row short
    with pytest.raises(DataError, match="scored different rows"):
        replay_rows(None, {"churn": churn, "growth": growth})
