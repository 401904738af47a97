"""The generic feature families on a table small enough to count by hand.

Each expected number below is worked out in the comments from the events written here, so a reader can
check it without running anything. The as-of date T is 2026-03-01: the last 30 days are 2026-01-30 to
2026-02-28, the 30 before 2025-12-31 to 2026-01-29, the year's look-back starts 2025-03-01.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.metrics import DEFAULT_FAMILIES, FAMILIES, default_metric_set
from features.tables import DataError, Tables, validate_tables

T = pd.Timestamp("2026-03-01")
# (account, user, day, event, count): login and report_exported are declared healthier in the shipped
# metrics.yaml, so they are "product use"; support_ticket is undeclared and is not.
EVENTS = [
    ("A", "u1", "2026-01-10", "login", 1),  # u1: active 30-60 days ago and in the last 30: stays
    ("A", "u1", "2026-02-10", "login", 1),
    ("A", "u1", "2026-02-20", "login", 1),
    ("A", "u1", "2026-02-25", "report_exported", 1),
    ("A", "u2", "2026-01-15", "login", 1),  # u2: active 30-60 days ago, nothing since: stopped
    ("A", "u3", "2026-01-05", "login", 1),  # u3: stays (a ticket is activity, though not product use)
    ("A", "u3", "2026-02-28", "support_ticket", 1),
    ("A", "u4", "2026-02-15", "login", 2),  # u4: first event ever in the last 30 days: new
    ("A", "u5", "2025-10-01", "login", 7),  # u5: seen within the year before the window: not new
    ("A", "u5", "2026-02-01", "login", 1),
    ("A", "u6", "2025-01-15", "login", 1),  # u6: last seen more than a year ago: new again
    ("A", "u6", "2026-02-05", "login", 1),
    ("A", "u7", "2025-12-20", "login", 1),  # u7: 71 days ago only: neither stopped (not 30-60 days ago) nor active
    ("A", None, "2026-02-12", "login", 3),  # no user id: counts as use, in no user figure
    ("A", "u8", "2026-03-01", "login", 50),  # on T itself: invisible at T
    ("B", "b1", "2026-02-10", "login", 4),  # B: one user does everything
    ("B", "b2", "2025-11-20", "login", 1),  # keeps the event end after T so T is a valid as-of date
    ("B", "b2", "2026-03-05", "login", 1),
]


def tables(with_users: bool = True) -> Tables:
    accounts = pd.DataFrame({"account_id": ["A", "B"], "created_at": pd.to_datetime(["2025-01-01", "2025-01-01"])})
    subscriptions = pd.DataFrame(
        {
            "account_id": ["A", "B"],
            "start_date": pd.to_datetime(["2025-04-01", "2025-12-01"]),
            "end_date": pd.to_datetime(["2026-04-01", "2026-12-01"]),  # A renews in 31 days, B in 275
            "arr": [12000.0, 3000.0],
            "seats": [10, 4],
        }
    )
    events = pd.DataFrame(EVENTS, columns=["account_id", "user_id", "timestamp", "event", "count"])
    events["timestamp"] = pd.to_datetime(events["timestamp"]) + pd.Timedelta(hours=9)
    events.loc[events["timestamp"].dt.normalize() == T, "timestamp"] = T  # exactly at midnight on T
    if not with_users:
        events = events.drop(columns="user_id")
    return validate_tables({"accounts": accounts, "subscriptions": subscriptions, "events": events})


def every_family(t: Tables):
    """The shipped declarations with every generic family (not only the defaults) derived."""
    return default_metric_set(sorted(t.events["event"].unique()), users=t.has_users, families=tuple(FAMILIES))


def row(frame: pd.DataFrame, account: str) -> pd.Series:
    return frame.set_index("account_id").loc[account]


@pytest.fixture(scope="module")
def features():
    t = tables()
    return build_features(t, [T], every_family(t))


def test_user_churn_counts_users_who_stopped_and_new_users(features):
    a, b = row(features.frame, "A"), row(features.frame, "B")
    assert a["activity__users_prior_30d"] == 3  # u1, u2, u3 active 30-60 days ago
    assert a["activity__users_30d"] == 5  # u1, u3, u4, u5, u6 (u8's event on T is not seen)
    assert a["activity__lapsed_users_30d"] == 1  # u2
    assert a["activity__new_users_30d"] == 2  # u4 (first ever) and u6 (nothing in the year before)
    assert b["activity__lapsed_users_30d"] == 0 and b["activity__new_users_30d"] == 1  # b1


def test_concentration_is_the_top_users_share_of_events_with_a_user(features):
    a, b = row(features.frame, "A"), row(features.frame, "B")
    # last 30 days, counts by user: u1 3, u3 1, u4 2, u5 1, u6 1 (8 in all; the 3 without a user are left out)
    assert a["activity__top_user_share_30d"] == pytest.approx(3 / 8)
    assert b["activity__top_user_share_30d"] == 1.0


def test_rates_breadth_and_trends_follow_the_declared_use(features):
    a, b = row(features.frame, "A"), row(features.frame, "B")
    # use (logins and reports) in the last 30 days: u1 2 + 1, u4 2, u5 1, u6 1, no user 3 = 10
    assert a["use__per_user_30d"] == pytest.approx(10 / 5)
    assert a["use__per_seat_30d"] == pytest.approx(10 / 10)
    assert b["use__per_seat_30d"] == pytest.approx(4 / 4)
    assert a["use__event_types_30d"] == 2 and b["use__event_types_30d"] == 1  # the ticket is not use
    # 90 days: the 10 + u1, u2, u3 in January + u7 in December = 14; 90-180 days ago: u5's 7 in October
    assert a["use__trend_90d"] == pytest.approx(14 / 7 - 1)
    # users in 90 days: u1..u7 = 7; 90-180 days ago: u5 = 1
    assert a["activity__users_trend_90d"] == pytest.approx(7 / 1 - 1)
    # A renews in 31 days: last 60 days 10 + 3 January logins = 13, the 60 before u7's 1
    assert a["days_to_renewal"] == 31 and a["use__renewal_trend_60d"] == pytest.approx(13 / 1 - 1)
    assert b["days_to_renewal"] == 275 and np.isnan(b["use__renewal_trend_60d"])  # not near renewal: absent


def test_each_new_aggregate_in_sql_gives_the_hand_counted_figures():
    t = tables()
    con = duckdb.connect()
    con.register("events", t.events)
    con.register("as_of_dates", pd.DataFrame({"as_of": [T]}))
    windows = {m.name: m for m in every_family(t).windows}
    expected = {
        "activity__lapsed_users_30d": {"A": 1, "B": 0},
        "activity__new_users_30d": {"A": 2, "B": 1},
        "activity__top_user_share_30d": {"A": 3 / 8, "B": 1.0},
        "use__event_types_30d": {"A": 2, "B": 1},
    }
    for name, values in expected.items():
        got = con.execute(windows[name].to_sql()).df().set_index("account_id")[name].to_dict()
        assert got == pytest.approx(values), name


def test_without_user_ids_user_based_families_are_absent_never_zero():
    t = tables(with_users=False)
    fs = build_features(t, [T], every_family(t))
    absent = {
        "activity__lapsed_users_30d",
        "activity__new_users_30d",
        "activity__top_user_share_30d",
        "activity__users_prior_30d",
        "use__per_user_30d",
        "activity__users_trend_90d",
    }
    assert not absent & set(fs.frame.columns) and not absent & set(fs.names)
    a = row(fs.frame, "A")
    assert a["use__per_seat_30d"] == pytest.approx(1.0)  # seats need no user id
    assert a["use__event_types_30d"] == 2 and a["use__trend_90d"] == pytest.approx(1.0)


def test_every_family_feature_has_a_description_a_csm_reads():
    metrics = default_metric_set(["login", "report_exported", "support_ticket"], families=tuple(FAMILIES))
    generic = {n for n, f in metrics.families.items() if f in FAMILIES and n in metrics.feature_names}
    assert {metrics.families[n] for n in generic} == set(FAMILIES)
    shipped = default_metric_set(["login", "report_exported", "support_ticket"]).families  # the defaults only
    assert {f for n, f in shipped.items() if f in FAMILIES} == set(DEFAULT_FAMILIES)
    for name in generic:
        text = metrics.descriptions[name]
        assert text and "__" not in text and "_" not in text.replace("'", ""), (name, text)
    assert metrics.descriptions["use__per_seat_30d"] == "product uses per licensed seat in the last 30 days"
    assert metrics.descriptions["use__event_types_30d"] == "kinds of product use in the last 30 days (of 2 event types)"
    d = metrics.directions
    assert d["activity__lapsed_users_30d"] == -1 and d["activity__new_users_30d"] == 1
    assert d["activity__top_user_share_30d"] == 0  # argued undeclared (a service user may post everything)
    assert d["use__per_seat_30d"] == d["use__trend_90d"] == d["use__renewal_trend_60d"] == 1
    # a vocabulary with nothing declared healthier counts every event as use, and declares nothing
    other = default_metric_set(["page_view", "click"], families=("use_rates",))
    assert other.descriptions["use__per_seat_30d"] == "events per licensed seat in the last 30 days"
    assert other.directions["use__per_seat_30d"] == 0


def test_a_metrics_file_picks_the_families_and_a_wrong_one_is_named(tmp_path):
    path = tmp_path / "metrics.yaml"
    path.write_text("families: [breadth]\n")
    names = default_metric_set(["login"], path).feature_names
    assert "use__event_types_30d" in names and "activity__lapsed_users_30d" not in names
    path.write_text("families:\n")
    assert not {"use__event_types_30d", "use__per_seat_30d"} & set(default_metric_set(["login"], path).feature_names)
    path.write_text("families: [breadth, churners]\n")
    with pytest.raises(DataError, match="unknown famil\\(ies\\) churners; use use_rates, user_churn"):
        default_metric_set(["login"], path)
    path.write_text("families: breadth\n")
    with pytest.raises(DataError, match="families must be a list"):
        default_metric_set(["login"], path)
    path.write_text("metrics:\n  - {name: x, events: [login], agg: lapsed_users, window_days: 200, description: x}\n")
    with pytest.raises(DataError, match="reads at most 365 days"):
        default_metric_set(["login"], path)
