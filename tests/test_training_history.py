"""Short histories and label rules: young companies train honestly, or hear how much more history they need.

The short books are cut from demo worlds the way a young company's export looks: nothing before the
company started (events, contracts), every account created on or after that day, terms that ran into
it starting on it. Measured on two worlds (different seeds and sizes).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.build import MIN_HISTORY_DAYS, MIN_WARM_UP_DAYS, WEEKLY, build_snapshots, first_snapshot
from features.demo_world import write_demo_world
from features.io import write_table
from features.subscriptions import LabelRules, labels
from features.tables import DataError, Tables, load_tables
from training.backtest import MIN_FOLDS, block_size, fold_plan, rolling_folds
from training.pipeline import train
from training.registry import load_bundle
from training.snapshots import (
    DEFAULT_HORIZON_DAYS,
    MIN_AUTO_HORIZON_DAYS,
    choose_cadence,
    longest_horizon,
    snapshots,
)

DATA_END = pd.Timestamp("2026-11-01")  # the demo world's events stop on 2026-10-31
ROUNDS = 30


def young_company(src: Path, dst: Path, start: pd.Timestamp, end: pd.Timestamp = DATA_END) -> Path:
    """The export, made on `end`, of a company that started on `start`: the demo book as if it began that day."""
    tables = load_tables(src)
    subs = tables.subscriptions
    subs = subs[(subs["end_date"] > start) & (subs["start_date"] < end)].copy()  # later terms are not signed yet
    subs["start_date"] = subs["start_date"].clip(lower=start)  # a term running on `start` is its first
    accounts = tables.accounts[tables.accounts["account_id"].isin(subs["account_id"])].copy()
    accounts["created_at"] = accounts["created_at"].clip(lower=start)
    events = tables.events[tables.events["account_id"].isin(accounts["account_id"])]
    events = events[(events["timestamp"] >= start) & (events["timestamp"] < end)]
    dst.mkdir(parents=True, exist_ok=True)
    for name, frame in (("accounts", accounts), ("subscriptions", subs), ("events", events)):
        write_table(frame, dst / f"{name}.parquet")
    return dst


def months_of_history(months: int) -> pd.Timestamp:
    return DATA_END - pd.DateOffset(months=months)


@pytest.fixture(scope="module", params=[(400, 7), (250, 3)], ids=["400-seed7", "250-seed3"])
def world(request, tmp_path_factory) -> Path:
    n, seed = request.param
    out = tmp_path_factory.mktemp(f"world{n}_{seed}")
    write_demo_world(out, n_accounts=n, seed=seed)
    return out


def cut_to_months(world: Path, root: Path) -> dict[int, Path]:
    """The world cut to 3, 6 and 7 months of history."""
    return {m: young_company(world, (root / f"m{m}").resolve(), months_of_history(m)) for m in (3, 6, 7)}


@pytest.fixture(scope="module")
def short_books(world, tmp_path_factory) -> dict[int, Path]:
    """Each world cut short (the tests that measure on more than one world)."""
    return cut_to_months(world, tmp_path_factory.mktemp("short"))


@pytest.fixture(scope="module")
def cli_books(demo_dir, tmp_path_factory) -> dict[int, Path]:
    """The session's demo world cut short, for the (slower, one-world) command-line tests."""
    return cut_to_months(demo_dir, tmp_path_factory.mktemp("cli"))


def assert_honest_folds(folds, as_of: pd.Series, window_days: int) -> None:
    assert len(folds) >= MIN_FOLDS
    for fold in folds:
        assert fold.train.any() and fold.valid.any()
        assert (as_of[fold.train] + pd.Timedelta(days=window_days) <= fold.origin).all()
        assert (as_of[fold.valid] >= fold.origin).all()


# ------------------------------------------------------------------------------------------- label rules


def one_account(*terms: tuple[str, str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [("A", pd.Timestamp(s), pd.Timestamp(e), arr, 5) for s, e, arr in terms],
        columns=["account_id", "start_date", "end_date", "arr", "seats"],
    )


def label_at(subs: pd.DataFrame, as_of: str, horizon: int, rules: LabelRules) -> dict:
    return labels(subs, pd.DatetimeIndex([as_of]), horizon, rules).iloc[0].to_dict()


def test_a_renewal_starting_a_few_days_late_is_churn_only_without_grace():
    # T = 2025-11-01, T + H = 2026-01-03: the old term ended on 2026-01-01
    late = one_account(("2025-01-01", "2026-01-01", 1000.0), ("2026-01-06", "2027-01-06", 1000.0))  # 5 days late
    assert label_at(late, "2025-11-01", 63, LabelRules(churn_grace_days=14))["churn"] == 0
    assert label_at(late, "2025-11-01", 63, LabelRules(churn_grace_days=0))["churn"] == 1
    assert label_at(late, "2025-11-01", 63, LabelRules(churn_grace_days=5))["churn"] == 0  # the grace is inclusive
    lapsed = one_account(("2025-01-01", "2026-01-01", 1000.0), ("2026-01-20", "2027-01-20", 1000.0))  # 19 days
    assert label_at(lapsed, "2025-11-01", 63, LabelRules(churn_grace_days=14))["churn"] == 1
    gone = one_account(("2025-01-01", "2026-01-01", 1000.0))
    assert label_at(gone, "2025-11-01", 63, LabelRules(churn_grace_days=30))["churn"] == 1
    # counted from the end of the last term, not from T + H: a long lapse that ends just after T + H is churn
    early_end = one_account(("2025-01-01", "2025-11-15", 1000.0), ("2026-01-05", "2027-01-05", 1000.0))
    assert label_at(early_end, "2025-11-01", 63, LabelRules(churn_grace_days=14))["churn"] == 1


def test_an_escalator_is_not_growth_but_an_expansion_is():
    def renewed_at(arr_later: float) -> pd.DataFrame:
        return one_account(("2025-01-01", "2026-01-01", 1000.0), ("2026-01-01", "2027-01-01", arr_later))

    rules = LabelRules(growth_min_increase=0.05)
    assert label_at(renewed_at(1030.0), "2025-12-01", 90, rules)["growth"] == 0  # a 3% price escalator
    assert label_at(renewed_at(1200.0), "2025-12-01", 90, rules)["growth"] == 1  # +20%
    assert label_at(renewed_at(1050.0), "2025-12-01", 90, rules)["growth"] == 1  # exactly the minimum counts
    assert label_at(renewed_at(1030.0), "2025-12-01", 90, LabelRules(growth_min_increase=0.0))["growth"] == 1
    assert label_at(renewed_at(1200.0), "2025-12-01", 90, rules)["uplift"] == pytest.approx(0.2)


def test_a_horizon_below_one_day_is_refused(short_books):
    with pytest.raises(DataError, match="horizon must be at least 1 day"):
        snapshots(load_tables(short_books[6]), 0)


def test_bad_label_rules_are_refused():
    with pytest.raises(DataError, match="grace period must be >= 0"):
        LabelRules(churn_grace_days=-1)
    for share in (-0.1, 5):  # 5 meaning 5% would be +500%
        with pytest.raises(DataError, match="minimum increase is a share of ARR between 0 and 1"):
            LabelRules(growth_min_increase=share)


def test_snapshots_need_their_label_window_grace_included(short_books):
    tables = load_tables(short_books[6])
    rules = LabelRules(churn_grace_days=14)
    dates = pd.date_range(months_of_history(6) + pd.Timedelta(days=7), DATA_END, freq="W-MON")
    frame = build_snapshots(tables, dates, 30, rules).frame
    assert (frame["as_of"] + pd.Timedelta(days=44) <= tables.data_end).all()
    assert frame["as_of"].max() + pd.Timedelta(days=51) > tables.data_end  # the last week that fits is kept


# ---------------------------------------------------------------------------------------- short histories


def test_long_history_keeps_monthly_snapshots_and_three_folds(world):
    snap = snapshots(load_tables(world), 90)
    assert snap.cadence.name == "monthly" and len(snap.folds()) == 3
    assert_honest_folds(snap.folds(), snap.frame["as_of"], snap.window_days)


@pytest.mark.parametrize(("months", "horizon"), [(6, 30), (6, 60), (7, 60)])
def test_short_history_gets_weekly_snapshots_and_honest_folds(short_books, months, horizon):
    snap = snapshots(load_tables(short_books[months]), horizon)
    assert snap.cadence == WEEKLY
    dates = pd.DatetimeIndex(snap.frame["as_of"].unique()).sort_values()
    assert (dates.day_of_week == 0).all() and (np.diff(dates) == pd.Timedelta(days=7)).all()
    assert_honest_folds(snap.folds(), snap.frame["as_of"], horizon + 14)


def test_without_a_horizon_six_months_train_at_the_longest_horizon_that_fits(world, short_books):
    assert snapshots(load_tables(world)).horizon_days == DEFAULT_HORIZON_DAYS  # a long history keeps 90 days
    six = load_tables(short_books[6])
    snap = snapshots(six)
    assert MIN_AUTO_HORIZON_DAYS <= snap.horizon_days < DEFAULT_HORIZON_DAYS
    assert snap.horizon_days == longest_horizon(six, LabelRules(), DEFAULT_HORIZON_DAYS)
    assert snap.cadence == WEEKLY and len(snap.folds()) >= MIN_FOLDS
    assert_honest_folds(snap.folds(), snap.frame["as_of"], snap.window_days)
    with pytest.raises(DataError, match="needs about"):  # one day longer no longer fits: the longest indeed
        snapshots(six, snap.horizon_days + 1)


def test_warm_up_waits_for_whole_windows_only_where_the_export_cuts_accounts_short(world, short_books):
    start = months_of_history(7)
    young = load_tables(short_books[7])
    assert first_snapshot(young) == start + pd.Timedelta(days=MIN_WARM_UP_DAYS)
    # an established company whose analytics export keeps only the last seven months of events
    full = load_tables(world)
    cut = Tables(full.accounts, full.subscriptions, full.events[full.events["timestamp"] >= start])
    assert first_snapshot(cut) == start + pd.Timedelta(days=MIN_HISTORY_DAYS)
    snap = snapshots(cut, 60)
    assert snap.cadence == WEEKLY and snap.frame["as_of"].min() >= start + pd.Timedelta(days=MIN_HISTORY_DAYS)
    assert_honest_folds(snap.folds(), snap.frame["as_of"], snap.window_days)


def test_too_short_a_history_says_exactly_how_much_more_it_needs(world, tmp_path):
    rules = LabelRules()
    start = months_of_history(10)
    end = start + pd.DateOffset(months=3)

    def book(extra_days: int) -> Path:  # the same young company, its export made `extra_days` later
        return young_company(world, tmp_path / str(extra_days), start, end + pd.Timedelta(days=extra_days))

    with pytest.raises(DataError) as refused:
        snapshots(load_tables(book(0)), 90, rules=rules)
    message = str(refused.value)
    assert "a 90-day horizon plus 14 days' churn grace, 2 folds" in message
    more = int(re.search(r"needs about (\d+) more days of history", message).group(1))
    shorter = int(re.search(r"a --horizon-days of (\d+) fits this history", message).group(1))
    assert 90 < more < 300 and 0 < shorter < 90

    def fits(extra_days: int, horizon: int = 90) -> bool:
        tables = load_tables(book(extra_days))
        assert tables.data_end == end + pd.Timedelta(days=extra_days)
        try:
            choose_cadence(tables, horizon, rules, tables.data_end - pd.Timedelta(days=rules.window_days(horizon)))
        except DataError:
            return False
        return True

    assert fits(more) and not fits(more - 1)  # the number is computed, not guessed
    assert fits(0, shorter) and not fits(0, shorter + 1)


def test_folds_shrink_then_fall_to_two_as_the_label_window_grows():
    dates = pd.date_range("2026-03-02", periods=16, freq="W-MON")
    # validation can start 2 dates + the window in; 3 folds of up to 13 weeks, fewer and shorter as room shrinks
    assert fold_plan(dates, 30, block_size(7)) == (3, 3)
    assert fold_plan(dates, 74, block_size(7)) == (3, 1)
    assert fold_plan(dates, 90, block_size(7)) == (2, 1)
    assert fold_plan(dates, 104, block_size(7)) is None
    assert block_size(30) == 3 and block_size(7) == 13


def test_no_fold_ever_trains_on_an_open_label_window():
    as_of = pd.Series(np.repeat(pd.date_range("2026-03-02", periods=16, freq="W-MON"), 10))
    for gap in (30, 44, 74):
        assert_honest_folds(rolling_folds(as_of, gap, cadence_days=7), as_of, gap)
    with pytest.raises(DataError, match="too little history"):
        rolling_folds(as_of, 104, cadence_days=7)


# ------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
@pytest.mark.parametrize(("months", "horizon"), [(6, 30), (7, 60)])
def test_a_young_company_trains_end_to_end(short_books, fresh_store, months, horizon):
    rules = LabelRules(churn_grace_days=7, growth_min_increase=0.05)
    result = train(short_books[months], horizon_days=horizon, seed=0, max_rounds=ROUNDS, label_rules=rules)
    snap = snapshots(load_tables(short_books[months]), horizon, rules=rules)
    for bt in result.backtests.values():
        assert len(bt.folds) >= MIN_FOLDS
        assert_honest_folds(bt.folds, snap.frame["as_of"], horizon + 7)
    params = MlflowClient().get_run(result.run_id).data.params
    assert params["snapshot_cadence"] == "weekly" and int(params["n_folds"]) == len(bt.folds)
    assert params["horizon_days"] == str(horizon)
    assert (params["churn_grace_days"], params["growth_min_increase"]) == ("7", "0.05")
    churn = load_bundle("tierwise-churn", result.versions["churn"])
    growth = load_bundle("tierwise-growth", result.versions["growth"])
    for bundle in (churn, growth):
        assert bundle.info["snapshot_cadence"] == "weekly" and bundle.info["horizon_days"] == horizon
        assert bundle.info["churn_grace_days"] == 7 and bundle.info["growth_min_increase"] == 0.05
    card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/churn_report/model_card.md")
    assert f"within the horizon\n({horizon} days)" in card and "up to 7 days late" in card and "weekly as-of" in card
    # expected expansion uses the growth the labels counted: every counted uplift is at least +5%
    assert growth.info["mean_uplift"] >= 0.05
    assert growth.info["mean_uplift"] == pytest.approx(snap.frame.loc[snap.frame["growth"] == 1, "uplift"].mean())
    if months == 7:  # a model of another outcome is never judged against the champion on the new labels
        other = train(short_books[months], horizon_days=horizon - 7, seed=0, max_rounds=ROUNDS, label_rules=rules)
        assert other.aliases == {"churn": "challenger", "growth": "challenger"}
        assert "another horizon or label rules" in other.reasons["churn"]


@pytest.mark.slow
def test_cli_trains_three_months_with_a_monthly_plan_horizon_and_logs_its_label_rules(cli_books, fresh_store):
    # three months are refused at the defaults (below); a 30-day horizon without grace fits them
    proc = subprocess.run(
        [sys.executable, "-m", "tierwise", "train", "--data", str(cli_books[3]), "--horizon-days", "30",
         "--churn-grace-days", "0", "--growth-min-increase", "0.08"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "weekly snapshots" in proc.stderr and "labels: 30-day horizon, churn grace 0 days" in proc.stderr
    mlflow.set_tracking_uri(f"sqlite:///{fresh_store / 'mlflow.db'}")
    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("tierwise").experiment_id])[0]
    params = run.data.params
    assert (params["horizon_days"], params["churn_grace_days"], params["growth_min_increase"]) == ("30", "0", "0.08")
    assert params["snapshot_cadence"] == "weekly" and int(params["n_folds"]) >= MIN_FOLDS
    # everything followed the 30-day horizon: the last snapshot is the last Monday whose 30 days closed
    last = pd.Timestamp(params["train_last_as_of"])
    assert last + pd.Timedelta(days=30) <= DATA_END < last + pd.Timedelta(days=37)
    snap = snapshots(load_tables(cli_books[3]), 30, rules=LabelRules(0, 0.08))
    assert int(params["n_snapshots"]) == len(snap.frame)


@pytest.mark.slow
def test_cli_without_a_horizon_trains_six_months_and_says_which_horizon_it_chose(cli_books, fresh_store):
    proc = subprocess.run(
        [sys.executable, "-m", "tierwise", "train", "--data", str(cli_books[6])], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    chosen = snapshots(load_tables(cli_books[6])).horizon_days
    said = " ".join(proc.stderr.split())
    assert (
        f"warning: the history is too short for an honest backtest at a 90-day horizon: training at {chosen} days"
        in said
    )
    mlflow.set_tracking_uri(f"sqlite:///{fresh_store / 'mlflow.db'}")
    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("tierwise").experiment_id])[0]
    assert run.data.params["horizon_days"] == str(chosen)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--churn-grace-days", "-3"], "grace period must be >= 0"),
        (["--growth-min-increase", "10"], "minimum increase is a share of ARR"),
        (["--horizon-days", "90"], "needs about"),
    ],
)
def test_cli_refuses_bad_label_and_history_options_in_one_line(cli_books, fresh_store, args, message):
    command = [sys.executable, "-m", "tierwise", "train", "--data", str(cli_books[3]), *args]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not any(fresh_store.iterdir())  # refused before anything was written
