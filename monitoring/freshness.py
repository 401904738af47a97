"""Data freshness: is every kind of event still arriving, and is the newest batch recent enough?

A tracking change that silently drops one event type leaves the rest of the data looking normal,
and the features built from it quietly fall to zero: the model then reads a healthy account as a
disengaged one. So each event type (and each `source`, when the events have that column) gets a
change-point test on its daily counts over the last `LOOKBACK_DAYS`: the split that best explains
the counts as two Poisson rates, before and after. A fall to zero is `stopped`, a fall to at most
`COLLAPSE_RATIO` of the earlier rate `collapsed`; either needs at least `MIN_DAYS_AFTER` days after
the change (a weekend is not a change) and a log-likelihood ratio of at least `MIN_LLR`, which a
few quiet days of a rare event type cannot reach. The date named is the first day of the new rate
(for a stop: the day after the last event).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.subscriptions import contract_state
from features.tables import Tables

LOOKBACK_DAYS = 180
MIN_DAYS_BEFORE = 28
MIN_DAYS_AFTER = 7
COLLAPSE_RATIO = 0.5
MIN_LLR = 15.0  # about a 1e-7 chance for one split; generous for the ~150 splits searched
SHOWN_ACCOUNTS = 20
SILENCE_Z = 3.3  # one-sided, about 1 in 2,000


@dataclass
class Stream:
    """One event type (or source): when it was last seen and whether its volume broke off."""

    kind: str  # "event" or "source"
    name: str
    last_seen: str
    status: str  # "ok", "stopped" or "collapsed"
    since: str | None = None  # first day of the new rate
    rate_before: float = float("nan")  # events per day before `since`
    rate_after: float = float("nan")


def latest_rows(tables: Tables) -> dict[str, str]:
    """The newest date each table holds: last event, last subscription row started, last account created.

    Shown, not alarmed: a billing export that stopped updating shows here as a date far behind the events.
    """
    return {
        "events": str(tables.events["timestamp"].max().date()),
        "subscriptions": str(tables.subscriptions["start_date"].max().date()),
        "accounts": str(tables.accounts["created_at"].max().date()),
    }


def streams(events: pd.DataFrame, data_end: pd.Timestamp) -> list[Stream]:
    """Every event type, and every source when events carry a `source` column, with its status."""
    out = [stream("event", name, group["timestamp"], data_end) for name, group in events.groupby("event", sort=True)]
    if "source" in events.columns:
        out += [
            stream("source", str(name), group["timestamp"], data_end)
            for name, group in events.groupby("source", sort=True)
        ]
    return out


def stream(kind: str, name: str, timestamps: pd.Series, data_end: pd.Timestamp) -> Stream:
    """The change-point test on one stream's daily counts (see the module docstring)."""
    last = timestamps.max()
    start = data_end - pd.Timedelta(days=LOOKBACK_DAYS)
    days = ((timestamps[timestamps >= start] - start) // pd.Timedelta(days=1)).to_numpy(dtype=np.int64)
    counts = np.bincount(days, minlength=LOOKBACK_DAYS)[:LOOKBACK_DAYS].astype(float)
    found = Stream(kind, name, str(last.date()), "ok")
    split = change_point(counts)
    if split is None:
        return found
    k, before, after = split
    found.rate_before, found.rate_after = before, after
    if after == 0:
        found.status, found.since = "stopped", str((last.normalize() + pd.Timedelta(days=1)).date())
    elif after <= COLLAPSE_RATIO * before:
        found.status, found.since = "collapsed", str((start + pd.Timedelta(days=k)).date())
    return found


def change_point(counts: np.ndarray) -> tuple[int, float, float] | None:
    """The split k of daily counts that best fits a lower rate from day k on: (k, rate before, rate after).

    None when no fall is significant (`MIN_LLR`) with enough days on both sides.
    """
    n = len(counts)
    k = np.arange(MIN_DAYS_BEFORE, n - MIN_DAYS_AFTER + 1)
    if not len(k):
        return None
    cum = np.r_[0.0, np.cumsum(counts)]
    c1, c2, total = cum[k], cum[n] - cum[k], cum[n]
    r1, r2 = c1 / k, c2 / (n - k)
    llr = xlogy(c1, r1) + xlogy(c2, r2) - xlogy(total, total / n)
    llr = np.where(r2 < r1, llr, -np.inf)  # only falls
    best = int(np.argmax(llr))
    if llr[best] < MIN_LLR:
        return None
    return int(k[best]), float(r1[best]), float(r2[best])


def xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x * log(y) with 0 * log(0) = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(np.where(y > 0, y, 1.0)), 0.0)


@dataclass
class Silence:
    """Accounts under contract on a date whose events stopped `days` or more before it."""

    on: str
    days: int
    in_force: int
    silent: int
    accounts: list[dict]  # the first `SHOWN_ACCOUNTS`, longest silent first: account_id, last_event

    @property
    def share(self) -> float:
        return self.silent / self.in_force if self.in_force else 0.0


def silent_accounts(events: pd.DataFrame, subscriptions: pd.DataFrame, on: pd.Timestamp, days: int) -> Silence:
    """Accounts in force on `on` with no event in the `days` days before it (or none at all)."""
    live = contract_state(subscriptions, pd.DatetimeIndex([on]))["account_id"].astype(str).unique()
    last = events.loc[events["timestamp"] < on].groupby("account_id")["timestamp"].max()
    last = last.reindex(pd.Index(live, dtype="str"))
    quiet = last[~(last >= on - pd.Timedelta(days=days))].sort_values(na_position="first")
    shown = [
        {"account_id": str(a), "last_event": None if pd.isna(t) else str(t.date())}
        for a, t in quiet.head(SHOWN_ACCOUNTS).items()
    ]
    return Silence(str(on.date()), days, len(last), len(quiet), shown)


def silence_grew(now: Silence, before: Silence) -> bool:
    """Whether the share of silent accounts at least doubled since `before`, beyond chance.

    Some accounts are always quiet (a team on holiday, an account about to leave); a tracking or export
    fault silences many at once. A one-sided two-proportion z-test at `SILENCE_Z` keeps the usual few
    quiet accounts from raising `stale`.
    """
    if not (now.in_force and before.in_force) or now.share <= 2 * before.share:
        return False
    pooled = (now.silent + before.silent) / (now.in_force + before.in_force)
    se = np.sqrt(pooled * (1 - pooled) * (1 / now.in_force + 1 / before.in_force))
    return bool(se > 0 and (now.share - before.share) / se > SILENCE_Z)
