"""The demo world must be deterministic, hold to the data contract, and carry real (noisy) signals.

Downstream models are trained on it, so a silent break here (an event after churn, a missing renewal
row, usage unrelated to churn) would show up much later as a model that looks fine and is wrong.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features import demo_world
from features.demo_world import EVENT_TYPES, simulate, write_demo_world

N = 300
SEED = 11
END = pd.Timestamp("2026-10-31")
COLUMNS = {
    "accounts": ["account_id", "created_at", "industry", "region", "employees", "plan", "segment"],
    "subscriptions": ["account_id", "start_date", "end_date", "arr", "seats"],
    "events": ["account_id", "timestamp", "event", "user_id", "count", "value"],
}
KINDS = {
    "accounts": ["str", "date", "str", "str", "int", "str", "str"],
    "subscriptions": ["str", "date", "date", "float", "int"],
    "events": ["str", "date", "str", "str", "int", "float"],
}


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    accounts, subscriptions, events = simulate(N, SEED)
    return {"accounts": accounts, "subscriptions": subscriptions, "events": events}


def dtype_kind(series: pd.Series) -> str:
    if pd.api.types.is_string_dtype(series) and not pd.api.types.is_object_dtype(series):
        return "str"
    if pd.api.types.is_datetime64_dtype(series):
        return "date"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return str(series.dtype)


def last_term_end(subscriptions: pd.DataFrame) -> pd.Series:
    return subscriptions.groupby("account_id")["end_date"].max()


def arr_on(subscriptions: pd.DataFrame, day: pd.Timestamp) -> pd.Series:
    active = subscriptions[(subscriptions["start_date"] <= day) & (subscriptions["end_date"] > day)]
    return active.groupby("account_id")["arr"].sum()


def test_same_seed_gives_identical_tables_and_other_seeds_differ(world):
    again = simulate(N, SEED)
    for name, frame in zip(COLUMNS, again, strict=True):
        pd.testing.assert_frame_equal(world[name], frame)
    other = simulate(N, SEED + 1)
    assert not other[2]["timestamp"].equals(world["events"]["timestamp"])
    assert not other[1]["arr"].equals(world["subscriptions"]["arr"])


def test_columns_and_dtypes_follow_the_contract(world):
    for name, columns in COLUMNS.items():
        frame = world[name]
        assert list(frame.columns) == columns, name
        assert [dtype_kind(frame[c]) for c in columns] == KINDS[name], name
        assert len(frame) > 0
    accounts = world["accounts"]
    assert accounts["account_id"].is_unique
    assert accounts["account_id"].str.fullmatch(r"ACC-\d{6}").all()
    assert (accounts["created_at"] == accounts["created_at"].dt.normalize()).all()
    assert set(accounts["segment"]) == {"SMB", "MidMarket", "Enterprise"}
    assert set(accounts["plan"]) == {"starter", "growth", "enterprise"}


def test_subscriptions_are_valid_contract_rows(world):
    subs, accounts = world["subscriptions"], world["accounts"]
    assert (subs["end_date"] > subs["start_date"]).all()
    assert (subs["arr"] >= 0).all() and (subs["seats"] >= 0).all()
    for col in ("start_date", "end_date"):
        assert (subs[col] == subs[col].dt.normalize()).all()
    assert subs["account_id"].isin(accounts["account_id"]).all()
    assert set(accounts["account_id"]) == set(subs["account_id"]), "every account has a contract"
    first_start = subs.groupby("account_id")["start_date"].min()
    created = accounts.set_index("account_id")["created_at"]
    assert (first_start == created.reindex(first_start.index)).all(), "the first term starts at creation"


def test_terms_renew_without_gaps(world):
    """A renewal is a new row starting where the previous term ended: coverage has no holes until churn."""
    subs = world["subscriptions"].sort_values(["account_id", "start_date"])
    covered_until = subs.groupby("account_id")["end_date"].cummax()
    previous = covered_until.groupby(subs["account_id"]).shift()
    gap = subs["start_date"] > previous
    assert not gap.any(), subs[gap].head()


def test_events_are_valid_and_stay_inside_the_account_life(world):
    events, accounts, subs = world["events"], world["accounts"], world["subscriptions"]
    assert events["account_id"].isin(accounts["account_id"]).all()
    assert set(events["event"]) == set(EVENT_TYPES)
    created = events["account_id"].map(accounts.set_index("account_id")["created_at"])
    assert (events["timestamp"] >= created).all(), "no event before created_at"
    last_end = events["account_id"].map(last_term_end(subs))
    assert (events["timestamp"] < last_end).all(), "no event after the last term ended"
    assert events["timestamp"].max() < END + pd.Timedelta(days=1)
    assert (events["timestamp"] != events["timestamp"].dt.normalize()).mean() > 0.99, "events have a time"
    assert events["timestamp"].is_monotonic_increasing
    prefix = events["account_id"].str.len().max() + 2
    assert (events["user_id"].str.slice(0, prefix) == events["account_id"] + "-u").all()
    assert (events["count"] >= 1).all() and (events["count"] == 1).mean() > 0.7
    nps = events["event"] == "nps_response"
    assert events.loc[nps, "value"].between(0, 10).all()
    assert events.loc[~nps, "value"].isna().all()


def test_book_has_churn_expansion_downgrades_and_onboarding(world):
    subs, accounts = world["subscriptions"], world["accounts"]
    last_end = last_term_end(subs)
    churned = last_end[last_end <= END]
    assert 0.1 < len(churned) / N < 0.6, len(churned)
    row_days = (subs["end_date"] - subs["start_date"]).dt.days
    assert ((row_days > 31) & (row_days < 360)).any(), "mid-term add-on rows exist"
    assert ((row_days >= 28) & (row_days <= 31)).any() and (row_days >= 365).any(), "monthly and annual terms"
    renewals = subs.merge(
        subs[["account_id", "end_date", "seats"]].rename(columns={"end_date": "start_date", "seats": "before"}),
        on=["account_id", "start_date"],
    )
    assert (renewals["seats"] < renewals["before"]).any(), "some renewals downgrade"
    early, late = arr_on(subs, pd.Timestamp("2025-01-15")), arr_on(subs, pd.Timestamp("2026-09-15"))
    both = early.index.intersection(late.index)
    grew = (late[both] > early[both]).mean()
    assert 0.1 < grew < 0.8, grew
    recent = accounts["created_at"] > END - pd.Timedelta(days=90)
    assert recent.sum() > 0, "some accounts are still onboarding"


def test_churners_use_less_in_the_90_days_before_their_last_term_end(world):
    subs, accounts, events = world["subscriptions"], world["accounts"], world["events"]
    created = accounts.set_index("account_id")["created_at"]
    last_end = last_term_end(subs)
    churned = last_end[last_end <= END]
    term_ends = set(zip(subs["account_id"], subs["start_date"], strict=True))
    is_renewal = [(a, d) in term_ends for a, d in zip(subs["account_id"], subs["end_date"], strict=True)]
    renewed = subs[is_renewal].groupby("account_id")["end_date"].max()

    def logins_per_seat_before(points: pd.Series) -> float:
        points = points[(points - created.reindex(points.index)).dt.days >= 120].rename("at").reset_index()
        logins = events[events["event"] == "login"].merge(points, on="account_id")
        window = logins[
            (logins["timestamp"] < logins["at"]) & (logins["timestamp"] >= logins["at"] - pd.Timedelta(90, "D"))
        ]
        n_logins = window.groupby("account_id").size().reindex(points["account_id"], fill_value=0)
        rows = subs.merge(points, on="account_id")
        seats = (
            rows[(rows["start_date"] < rows["at"]) & (rows["end_date"] >= rows["at"])]
            .groupby("account_id")["seats"]
            .sum()
        )
        return float(np.median(n_logins / seats.reindex(points["account_id"])))

    assert len(churned) > 30 and len(renewed) > 30
    assert logins_per_seat_before(churned) < 0.8 * logins_per_seat_before(renewed)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_written_tables_read_back_with_counts(tmp_path, fmt):
    out = tmp_path / "new" / "world"
    counts = write_demo_world(out, n_accounts=60, seed=3, end=date(2026, 10, 31), fmt=fmt)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.{fmt}" for name in COLUMNS)
    expected = dict(zip(COLUMNS, simulate(60, 3), strict=True))
    for name, frame in expected.items():
        path = out / f"{name}.{fmt}"
        back = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
        assert counts[name] == len(frame) == len(back)
        assert list(back.columns) == COLUMNS[name]
        if fmt == "parquet":
            pd.testing.assert_frame_equal(back, frame, check_dtype=False)
        else:
            date_col = {"accounts": "created_at", "subscriptions": "start_date", "events": "timestamp"}[name]
            assert (pd.to_datetime(back[date_col]).to_numpy() == frame[date_col].to_numpy()).all()
            assert (back["account_id"] == frame["account_id"]).all()


def test_a_failed_write_leaves_neither_a_table_nor_a_temp_file(tmp_path, monkeypatch):
    def half_write(self, path, **_):
        with open(path, "w") as handle:
            handle.write("account_id,created_at\nACC-0")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_demo_world(tmp_path, n_accounts=20, fmt="csv")
    assert list(tmp_path.iterdir()) == []


def test_rejects_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="fmt"):
        write_demo_world(tmp_path, n_accounts=20, fmt="xlsx")


def test_event_volume_scales_with_the_book():
    """Guard the scale promise (10 000 accounts -> 10+ million events) at a size a unit test can afford."""
    accounts, _, events = simulate(200, 5)
    assert len(events) / len(accounts) > 1_000
    assert demo_world.SIM_MONTHS >= 30
