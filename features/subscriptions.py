"""Contract state on a date: ARR, seats, the current term and its renewal, the lifecycle stage.

"State at as-of T" means the contracts in force on the last day before T (start < T <= end),
using only subscription rows that started before T, so a renewal signed on T is not seen.
Labels use the same rule at T + horizon, which keeps features and labels consistent; how a CS team
counts a late renewal or a price escalator is a `LabelRules`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from features.errors import DataError
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


@dataclass(frozen=True)
class LabelRules:
    """How a CS team counts churn and growth over the horizon (argued in docs/training.md).

    Attributes:
        churn_grace_days: a term that lapses and is followed by a new one starting at most this many
            days after it ended is a (late) renewal, not churn.
        growth_min_increase: growth needs ARR at T + horizon at least this share above ARR at T, so a
            price escalator of a few percent is not expansion.
    """

    churn_grace_days: int = 14
    growth_min_increase: float = 0.10

    def __post_init__(self) -> None:
        if self.churn_grace_days < 0:
            raise DataError(f"churn grace period must be >= 0 days, not {self.churn_grace_days}")
        if not 0 <= self.growth_min_increase <= 1:  # 5 for 5% would silently mean +500%
            raise DataError(
                "growth minimum increase is a share of ARR between 0 and 1 (0.10 = 10%), "
                f"not {self.growth_min_increase}"
            )

    def window_days(self, horizon_days: int) -> int:
        """Days after T a label may look at: the horizon plus the grace period for a late renewal."""
        return horizon_days + self.churn_grace_days

    def as_dict(self) -> dict:
        return asdict(self)


def labels(
    subs: pd.DataFrame, dates: pd.DatetimeIndex, horizon_days: int, rules: LabelRules | None = None
) -> pd.DataFrame:
    """Churn and growth labels per (account_id, as_of) for accounts active at as_of, and the ARR uplift.

    churn: in force at T, not in force at T+H, and no new term starting within the grace period after
    the account's last term before T+H ended. growth: in force at both with ARR(T+H) / ARR(T) - 1 at
    least the minimum increase (and above 0). `uplift` is that ratio (NaN when not in force at T+H),
    so expected expansion is measured on exactly the growth the label counts.
    """
    rules = rules or LabelRules()
    shift = pd.Timedelta(days=horizon_days)
    now = contract_state(subs, dates)[["account_id", "as_of", "arr"]]
    later = contract_state(subs, dates + shift)[["account_id", "as_of", "arr"]]
    later["as_of"] = later["as_of"] - shift
    out = now.merge(later, on=["account_id", "as_of"], how="left", suffixes=("", "_later"))
    lapsed = out["arr_later"].isna()
    out["churn"] = (lapsed & ~renewed_late(subs, out.loc[lapsed, ["account_id", "as_of"]], shift, rules)).astype(int)
    out["uplift"] = out["arr_later"] / out["arr"].where(out["arr"] > 0) - 1
    up = out["arr_later"] - out["arr"]  # the tolerance keeps 1000 -> 1100 at +10% despite float rounding
    out["growth"] = ((up > 0) & (up >= rules.growth_min_increase * out["arr"] * (1 - 1e-9))).astype(int)
    return out[["account_id", "as_of", "churn", "growth", "uplift"]]


def renewed_late(subs: pd.DataFrame, lapsed: pd.DataFrame, shift: pd.Timedelta, rules: LabelRules) -> pd.Series:
    """True (on `lapsed`'s index) where a new term starts within the grace period after the last one ended.

    `lapsed` holds (account_id, as_of) not in force at as_of + shift; their last term before then
    ended on E, and a row starting in [E, E + grace] is the late renewal.
    """
    if lapsed.empty or rules.churn_grace_days == 0:
        return pd.Series(False, index=lapsed.index)
    rows = lapsed.assign(key=np.arange(len(lapsed)), horizon=lapsed["as_of"] + shift).merge(subs, on="account_id")
    ended = rows[(rows["start_date"] < rows["horizon"]) & (rows["end_date"] < rows["horizon"])]
    last_end = ended.groupby("key")["end_date"].max()
    rows = rows.join(last_end.rename("last_end"), on="key")
    grace = pd.Timedelta(days=rules.churn_grace_days)
    late = rows[(rows["start_date"] >= rows["last_end"]) & (rows["start_date"] <= rows["last_end"] + grace)]
    return pd.Series(np.isin(np.arange(len(lapsed)), late["key"].unique()), index=lapsed.index)
