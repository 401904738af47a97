"""Contract state on a date: ARR, seats, the current term and its renewal, the lifecycle stage.

"State at as-of T" means the contracts in force on the last day before T (start < T <= end),
using only subscription rows that started before T, so a renewal signed on T is not seen.
Labels use the same rule at T + horizon, which keeps features and labels consistent.
"""

from __future__ import annotations

import pandas as pd

from features.tables import Tables


def in_force(subs: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """Subscription rows in force at each date, with the date as column `as_of`."""
    grid = subs.merge(pd.DataFrame({"as_of": dates}), how="cross")
    return grid[(grid["start_date"] < grid["as_of"]) & (grid["as_of"] <= grid["end_date"])]


def contract_state(subs: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """Per (account_id, as_of) for accounts in force: arr, seats, renewal_date, term_length_days."""
    rows = in_force(subs, dates).sort_values(["end_date", "start_date"], kind="stable")  # base term before add-ons
    grouped = rows.groupby(["account_id", "as_of"], sort=False)
    state = grouped.agg(arr=("arr", "sum"), seats=("seats", "sum"), renewal_date=("end_date", "first"))
    term = grouped.first()
    state["term_length_days"] = (term["end_date"] - term["start_date"]).dt.days.astype(float)
    return state.reset_index()


def subscription_features(tables: Tables, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """Contract features for every account in force at each date (the scoring population)."""
    subs, accounts = tables.subscriptions, tables.accounts
    state = contract_state(subs, dates)
    before = contract_state(subs, dates - pd.Timedelta(days=90))[["account_id", "as_of", "arr"]]
    before["as_of"] = before["as_of"] + pd.Timedelta(days=90)
    state = state.merge(before.rename(columns={"arr": "arr_90d_ago"}), on=["account_id", "as_of"], how="left")
    state["arr_change_90d"] = (state["arr"] - state["arr_90d_ago"]) / state["arr_90d_ago"].where(
        state["arr_90d_ago"] > 0
    )
    first_end = subs.sort_values("start_date").groupby("account_id")["end_date"].first().rename("first_renewal")
    created = accounts.set_index("account_id")["created_at"]
    state = state.join(first_end, on="account_id").join(created, on="account_id")
    state["days_to_renewal"] = (state["renewal_date"] - state["as_of"]).dt.days.astype(float)
    state["tenure_days"] = (state["as_of"] - state["created_at"]).dt.days.clip(lower=0).astype(float)
    state["lifecycle_stage"] = (state["as_of"] <= state["first_renewal"]).map(
        {True: "onboarding", False: "established"}
    )
    return state.drop(columns=["arr_90d_ago", "first_renewal", "created_at"])


def labels(subs: pd.DataFrame, dates: pd.DatetimeIndex, horizon_days: int) -> pd.DataFrame:
    """Churn and growth labels per (account_id, as_of) for accounts active at as_of.

    churn: active at T and not active at T+H; growth: active at both and ARR(T+H) > ARR(T).
    """
    now = contract_state(subs, dates)[["account_id", "as_of", "arr"]]
    later = contract_state(subs, dates + pd.Timedelta(days=horizon_days))[["account_id", "as_of", "arr"]]
    later["as_of"] = later["as_of"] - pd.Timedelta(days=horizon_days)
    out = now.merge(later, on=["account_id", "as_of"], how="left", suffixes=("", "_later"))
    out["churn"] = out["arr_later"].isna().astype(int)
    out["growth"] = (out["arr_later"] > out["arr"]).astype(int)
    return out[["account_id", "as_of", "churn", "growth"]]
