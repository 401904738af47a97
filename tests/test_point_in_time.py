"""Point-in-time proof, for every metric: nothing at or after the as-of date is seen, and nothing older
than the longest window matters. The engine is also checked against DuckDB running each metric's SQL.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.build import build_features, build_snapshots
from features.engine import encode_events, window_metrics
from features.metrics import COUNTING_AGGREGATES, FAMILIES, LOOKBACK, MetricSet, default_metric_set
from features.subscriptions import LabelRules
from features.tables import Tables
from tests.world import EVENTS, small_world

AS_OF = [pd.Timestamp("2025-03-01"), pd.Timestamp("2025-08-15"), pd.Timestamp("2025-11-01")]


@pytest.fixture(scope="module")
def world() -> Tables:
    return small_world()


def future_events(tables: Tables, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per account and event type: events at, just after and well after `as_of`, extreme values, from a new
    user (new users, distinct users, the top user's share) and from every known user of the account (one who
    had stopped is back: users who stopped)."""
    ids = tables.accounts["account_id"]
    users = pd.concat(
        [pd.DataFrame({"account_id": ids, "user_id": ids + "-newcomer"}), tables.events[["account_id", "user_id"]]]
    ).drop_duplicates()
    rows = []
    for lag in (pd.Timedelta(0), pd.Timedelta(minutes=1), pd.Timedelta(days=3)):
        for event in EVENTS:
            rows.append(
                users.assign(
                    timestamp=as_of + lag,
                    event=event,
                    count=np.where(users["user_id"].str.endswith("-newcomer"), 50.0, 1.0),
                    value=10.0 if event == "nps_response" else np.nan,
                )
            )
    return pd.concat(rows, ignore_index=True)


def with_events(tables: Tables, events: pd.DataFrame) -> Tables:
    return Tables(tables.accounts, tables.subscriptions, events.reset_index(drop=True))


def features_at(tables: Tables, as_of: pd.Timestamp, metrics) -> pd.DataFrame:
    return build_features(tables, [as_of], metrics).frame


@pytest.mark.parametrize("as_of", AS_OF)
def test_events_at_or_after_as_of_change_no_metric(world, as_of):
    metrics = default_metric_set(EVENTS, families=tuple(FAMILIES))  # the defaults and every family
    # A few accounts fell quiet for the 60 days before: the injected events are their only recent ones, so
    # aggregates that saturate in busy accounts (kinds of use) move too.
    ev = world.events
    quiet = ev["account_id"].isin(world.accounts["account_id"].iloc[:3]) & (
        ev["timestamp"] >= as_of - pd.Timedelta(days=60)
    )
    world = with_events(world, ev[~quiet])
    leaked = with_events(world, pd.concat([world.events, future_events(world, as_of)], ignore_index=True))
    base = features_at(world, as_of, metrics)
    pd.testing.assert_frame_equal(base, features_at(leaked, as_of, metrics))
    # Power: later the same injected events are history, and every metric moves: a day later, or (for a
    # window ending 30 days before the as-of date) 31 days later.
    moved = set()
    for days in (1, 31):
        later = as_of + pd.Timedelta(days=days)
        before, after = features_at(world, later, metrics), features_at(leaked, later, metrics)
        moved |= {
            name
            for name in metrics.feature_names
            if not np.allclose(before[name].to_numpy(float), after[name].to_numpy(float), equal_nan=True)
        }
    assert moved == set(metrics.feature_names), set(metrics.feature_names) - moved


@pytest.mark.parametrize("as_of", AS_OF)
def test_history_older_than_longest_window_changes_nothing(world, as_of):
    metrics = default_metric_set(EVENTS, families=tuple(FAMILIES))  # the defaults and every family
    cutoff = as_of - pd.Timedelta(days=max(m.span_days for m in metrics.windows))
    assert cutoff <= as_of - pd.Timedelta(days=LOOKBACK)
    trimmed = with_events(world, world.events[world.events["timestamp"] >= cutoff])
    assert len(trimmed.events) < len(world.events)
    pd.testing.assert_frame_equal(features_at(world, as_of, metrics), features_at(trimmed, as_of, metrics))


def test_contract_rows_starting_on_as_of_are_not_seen(world):
    as_of = AS_OF[1]
    base = build_features(world, [as_of]).frame
    addon = world.subscriptions.iloc[:5].assign(start_date=as_of, end_date=as_of + pd.Timedelta(days=400), arr=9e6)
    grown = Tables(world.accounts, pd.concat([world.subscriptions, addon], ignore_index=True), world.events)
    pd.testing.assert_frame_equal(base, build_features(grown, [as_of]).frame)


def test_many_dates_in_one_pass_equal_one_date_at_a_time(world):
    together = build_features(world, AS_OF).frame
    apart = pd.concat([build_features(world, [d]).frame for d in AS_OF]).sort_values(["account_id", "as_of"])
    apart = apart.reset_index(drop=True)
    pd.testing.assert_frame_equal(together, apart)


def test_engine_matches_duckdb_running_each_metric_sql(world):
    metrics = default_metric_set(EVENTS, families=tuple(FAMILIES))  # the defaults and every family
    ours = window_metrics(encode_events(world), metrics, pd.DatetimeIndex(AS_OF)).set_index(["account_id", "as_of"])
    # Without a metric needing events per user the engine keeps one row per user and day: the same figures.
    lean = MetricSet(tuple(m for m in metrics.windows if m.agg != "top_user_share"), ())
    slim = window_metrics(encode_events(world, lean), lean, pd.DatetimeIndex(AS_OF)).set_index(["account_id", "as_of"])
    pd.testing.assert_frame_equal(slim, ours[list(slim.columns)])
    con = duckdb.connect()
    con.register("events", world.events)
    con.register("as_of_dates", pd.DataFrame({"as_of": AS_OF}))
    for metric in metrics.windows:
        sql = con.execute(metric.to_sql()).df().set_index(["account_id", "as_of"])[metric.name]
        expected = sql.reindex(ours.index)
        if metric.agg in COUNTING_AGGREGATES:
            expected = expected.fillna(0)
        np.testing.assert_allclose(ours[metric.name], expected.astype(float), equal_nan=True, err_msg=metric.name)


@pytest.mark.parametrize("rules", [LabelRules(), LabelRules(churn_grace_days=0, growth_min_increase=0.0)])
def test_labels_follow_the_design(world, rules):
    horizon = 90
    snaps = build_snapshots(world, AS_OF, horizon, rules).frame
    subs = world.subscriptions

    def covered(acct, day):  # a row is active on day d when start_date <= d < end_date
        rows = subs[(subs.account_id == acct) & (subs.start_date <= day) & (day < subs.end_date)]
        return rows.arr.sum() if len(rows) else None

    def churned(acct, horizon_end):  # the uncovered stretch around the day before T+H, walked day by day
        gap_end = horizon_end - pd.Timedelta(days=1)
        if covered(acct, gap_end) is not None:
            return False
        lapsed = gap_end
        while covered(acct, lapsed - pd.Timedelta(days=1)) is None:
            lapsed -= pd.Timedelta(days=1)
        back = gap_end
        while back <= lapsed + pd.Timedelta(days=rules.churn_grace_days):
            if covered(acct, back) is not None:
                return False  # a new term within the grace period after the last one ended
            back += pd.Timedelta(days=1)
        return True

    for row in snaps.itertuples():
        day_before = row.as_of - pd.Timedelta(days=1)
        now = covered(row.account_id, day_before)
        later = covered(row.account_id, day_before + pd.Timedelta(days=horizon))
        assert now is not None
        assert row.churn == int(churned(row.account_id, row.as_of + pd.Timedelta(days=horizon)))
        grew = later is not None and later > now and later >= now * (1 + rules.growth_min_increase) - 1e-6
        assert row.growth == int(grew)
    assert snaps.churn.sum() > 0 and snaps.growth.sum() > 0
    # Only dates whose label window (horizon + grace) elapsed before the data ends become training snapshots.
    assert (snaps.as_of + pd.Timedelta(days=rules.window_days(horizon)) <= world.data_end).all()


def test_young_accounts_are_flagged_and_get_tenure_aware_rates(world):
    frame = build_features(world, AS_OF).frame
    young = frame[frame.tenure_days < 30]
    assert len(young) and young.insufficient_history.all()
    assert not frame[frame.tenure_days >= 30].insufficient_history.any()
    # A rate divides by the days the account has existed, not by a window it has not lived through.
    row = frame[frame.tenure_days.between(5, 60)].iloc[0]
    assert row["login__rate_90d"] == pytest.approx(row["login__count_90d"] / max(row["tenure_days"], 1))
