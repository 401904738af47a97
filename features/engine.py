"""One generic function computes every declared window metric for any list of as-of dates.

Why this shape: a window join of raw events against each as-of date rescans the events per
date and is dominated by the distinct-user counts. Instead the events are read once and
pre-aggregated to daily rows per (account, event) and to user-days; a window sum is then a
difference of cumulative sums found by binary search, and a distinct-user count is the
number of users whose last day before the window end falls inside the window. The other user
aggregates read the same per-user arrays: users who stopped are those whose last day falls in the
window before, new users those whose first day within the look-back falls inside the window, and
the top user's share is the largest per-user difference of cumulative counts. Distinct event types
count the per-event-type streams with a row in the window. All dates are answered from the same
sorted arrays. Only data strictly before an as-of date is visible. What each aggregate means,
exactly, is `features.metrics.AGGREGATES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.metrics import Metric, MetricSet
from features.tables import Tables, positions_in

SHIFT = np.int64(1 << 22)  # room for ~11,000 years of days inside one sortable int64 key


@dataclass
class EncodedEvents:
    """Events pre-aggregated once: integer codes, daily sums, and unique user-days."""

    accounts: pd.Index
    event_codes: dict[str, int]
    day0: pd.Timestamp
    daily: pd.DataFrame  # acct, event, day, count, vsum, vn
    user_days: pd.DataFrame  # acct, event, user, day (+ count when a metric needs events per user)
    cache: dict = field(default_factory=dict)

    def day_of(self, dates: pd.DatetimeIndex) -> np.ndarray:
        """Days since day0, clamped at 0 (no event precedes day0, so bounds below it are equivalent)."""
        return np.maximum((dates - self.day0).days.to_numpy(), 0).astype(np.int64)


def encode_events(tables: Tables, metrics: MetricSet | None = None) -> EncodedEvents:
    """The single pass over raw events that everything else reads from.

    User-days carry their event count only when a metric needs it (the top user's share; any metric
    when `metrics` is None): summing them costs about a sixth more time and half a GiB more memory on
    a 15-million-event book than keeping one row per user and day.
    """
    ev = tables.events
    accounts = pd.Index(tables.accounts["account_id"])
    acct = positions_in(accounts, ev["account_id"])
    event_code, event_names = pd.factorize(ev["event"], sort=True)
    day0 = ev["timestamp"].min().normalize()
    day = ((ev["timestamp"].to_numpy() - day0.to_datetime64()) // np.timedelta64(1, "D")).astype(np.int64)
    value = ev["value"].to_numpy(dtype=float)
    has_value = ~np.isnan(value)
    frame = pd.DataFrame(
        {
            "acct": acct.astype(np.int32),  # int32 codes halve the memory of the one big pass
            "event": event_code.astype(np.int32),
            "day": day.astype(np.int32),
            "count": ev["count"].to_numpy(dtype=float),
            "vsum": np.where(has_value, value, 0.0),
            "vn": has_value.astype(float),
        }
    )
    daily = frame.groupby(["acct", "event", "day"], sort=True, as_index=False).sum()
    user, _ = pd.factorize(ev["user_id"], use_na_sentinel=True)
    known = user >= 0
    user_days = pd.DataFrame(
        {
            "acct": frame["acct"].to_numpy()[known],
            "event": frame["event"].to_numpy()[known],
            "user": user[known].astype(np.int32),
            "day": frame["day"].to_numpy()[known],
        }
    )
    if metrics is None or any(m.agg == "top_user_share" for m in metrics.windows):
        user_days["count"] = frame["count"].to_numpy()[known]
        user_days = user_days.groupby(["acct", "event", "user", "day"], sort=False, as_index=False)["count"].sum()
    else:
        user_days = user_days.drop_duplicates()
    return EncodedEvents(accounts, {name: i for i, name in enumerate(event_names)}, day0, daily, user_days)


def window_metrics(encoded: EncodedEvents, metrics: MetricSet, as_of: pd.DatetimeIndex) -> pd.DataFrame:
    """All window metrics for every (as-of date, account): rows date-major, accounts within."""
    frame = pd.DataFrame({m.name: window_metric(encoded, m, as_of).ravel() for m in metrics.windows})
    frame.insert(0, "as_of", np.repeat(as_of.to_numpy(), len(encoded.accounts)))
    frame.insert(0, "account_id", np.tile(encoded.accounts.to_numpy(), len(as_of)))
    return frame


def window_metric(encoded: EncodedEvents, metric: Metric, as_of: pd.DatetimeIndex) -> np.ndarray:
    """One metric as a (dates x accounts) array, computed from the pre-aggregated streams."""
    end = encoded.day_of(as_of - pd.Timedelta(days=metric.offset_days))[:, None]
    start = encoded.day_of(as_of - pd.Timedelta(days=metric.offset_days + metric.window_days))[:, None]
    accts = np.arange(len(encoded.accounts), dtype=np.int64)[None, :]
    if metric.agg in PER_USER:
        reach = encoded.day_of(as_of - pd.Timedelta(days=metric.span_days))[:, None]
        return per_user(encoded, metric, accts.shape[1], reach[:, 0], start[:, 0], end[:, 0])
    if metric.agg == "distinct_events":
        return distinct_events(encoded, metric.events, accts, start, end)
    stream = daily_stream(encoded, metric.events)
    hi = np.searchsorted(stream["key"], accts * SHIFT + end)
    if metric.agg == "days_since_last":
        last = hi - 1
        day = stream["day"][np.maximum(last, 0)]
        valid = (last >= 0) & (stream["acct"][np.maximum(last, 0)] == accts) & (day >= start)
        return np.where(valid, end - day, np.nan)
    lo = np.searchsorted(stream["key"], accts * SHIFT + start)
    total = {"count": "count", "active_days": "ones", "sum_value": "vsum", "mean_value": "vsum"}[metric.agg]
    sums = stream["cum_" + total][hi] - stream["cum_" + total][lo]
    if metric.agg != "mean_value":
        return sums.astype(float)
    n = stream["cum_vn"][hi] - stream["cum_vn"][lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, sums / n, np.nan)


def daily_stream(encoded: EncodedEvents, events: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Daily rows of the events in a filter, sorted by (account, day), with cumulative sums."""
    key = ("daily", events)
    if key not in encoded.cache:
        daily = filtered(encoded, encoded.daily, events)
        daily = daily.groupby(["acct", "day"], sort=True, as_index=False)[["count", "vsum", "vn"]].sum()
        out = {"acct": daily["acct"].to_numpy(), "day": daily["day"].to_numpy()}
        out["key"] = out["acct"] * SHIFT + out["day"]
        for col in ("count", "vsum", "vn"):
            out["cum_" + col] = np.concatenate([[0.0], np.cumsum(daily[col].to_numpy())])
        out["cum_ones"] = np.arange(len(daily) + 1, dtype=float)
        encoded.cache[key] = out
    return encoded.cache[key]


def per_user(
    encoded: EncodedEvents, metric: Metric, n_accounts: int, reach: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """A user aggregate (`PER_USER`) per date and account: `reach` the first day it reads, [start, end) its window."""
    groups = user_groups(encoded, metric.events)
    out = np.full((len(end), n_accounts), np.nan if metric.agg == "top_user_share" else 0.0)
    if groups["n"] == 0:  # no event of this filter carries a user id
        return out
    for i, (r, s, e) in enumerate(zip(reach, start, end, strict=True)):
        out[i] = PER_USER[metric.agg](encoded, metric.events, groups, n_accounts, int(r), int(s), int(e))
    return out


def distinct_users(encoded, events, groups, n_accounts: int, reach: int, start: int, end: int) -> np.ndarray:
    """Users with at least one event in [start, end): those whose last day before `end` is >= `start`."""
    last = last_day_before(encoded, events, groups, end)
    return np.bincount(groups["acct"][last >= start], minlength=n_accounts)


def lapsed_users(encoded, events, groups, n_accounts: int, reach: int, start: int, end: int) -> np.ndarray:
    """Users active in [reach, start) (the window before) and not in [start, end): last day in [reach, start)."""
    last = last_day_before(encoded, events, groups, end)
    return np.bincount(groups["acct"][(last >= reach) & (last < start)], minlength=n_accounts)


def new_users(encoded, events, groups, n_accounts: int, reach: int, start: int, end: int) -> np.ndarray:
    """Users whose first day in [reach, end) is >= `start`: active in the window, not in the look-back before it."""
    first = np.searchsorted(groups["key"], groups["starts"] + reach)
    inside = np.minimum(first, len(groups["key"]) - 1)
    seen = (first < len(groups["key"])) & (groups["key"][inside] < groups["starts"] + end)
    return np.bincount(groups["acct"][seen & (groups["day"][inside] >= start)], minlength=n_accounts)


def top_user_share(encoded, events, groups, n_accounts: int, reach: int, start: int, end: int) -> np.ndarray:
    """The largest one user's count in [start, end) over the account's count there (events with a user id)."""
    cum = groups["cum_count"]
    per = (
        cum[np.searchsorted(groups["key"], groups["starts"] + end)]
        - cum[np.searchsorted(groups["key"], groups["starts"] + start)]
    )
    total = np.bincount(groups["acct"], weights=per, minlength=n_accounts)
    top = np.zeros(n_accounts)
    np.maximum.at(top, groups["acct"], per)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, top / total, np.nan)


def distinct_events(
    encoded: EncodedEvents, events: tuple[str, ...], accts: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """Event types of the filter with at least one daily row in [start, end), from each type's own stream."""
    out = np.zeros((end.shape[0], accts.shape[1]))
    for event in events or tuple(encoded.event_codes):
        if event not in encoded.event_codes:
            continue
        stream = daily_stream(encoded, (event,))
        rows = stream["cum_ones"]
        hi = np.searchsorted(stream["key"], accts * SHIFT + end)
        lo = np.searchsorted(stream["key"], accts * SHIFT + start)
        out += rows[hi] > rows[lo]
    return out


PER_USER = {
    "distinct_users": distinct_users,
    "lapsed_users": lapsed_users,
    "new_users": new_users,
    "top_user_share": top_user_share,
}


def user_groups(encoded: EncodedEvents, events: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Unique user-days of a filter, sorted by (account-user group, day)."""
    key = ("users", events)
    if key not in encoded.cache:
        ud = filtered(encoded, encoded.user_days, events)
        if "count" in ud:
            ud = ud.groupby(["acct", "user", "day"], sort=True, as_index=False)["count"].sum()
        else:
            ud = ud[["acct", "user", "day"]].drop_duplicates().sort_values(["acct", "user", "day"])
        pair = ud["acct"].to_numpy() * np.int64(1 << 31) + ud["user"].to_numpy()
        group, uniques = pd.factorize(pair, sort=True)
        day = ud["day"].to_numpy()
        encoded.cache[key] = {
            "key": group.astype(np.int64) * SHIFT + day,
            "day": day,
            "n": len(uniques),
            "acct": (uniques // np.int64(1 << 31)).astype(np.int64),
            "starts": np.arange(len(uniques), dtype=np.int64) * SHIFT,
            "cum_count": np.concatenate([[0.0], np.cumsum(ud["count"].to_numpy(dtype=float))])
            if "count" in ud
            else None,
        }
    return encoded.cache[key]


def last_day_before(encoded: EncodedEvents, events: tuple[str, ...], groups: dict, end: int) -> np.ndarray:
    """Per account-user group: the last active day strictly before `end` (-1 if none); cached per end."""
    key = ("last", events, end)
    if key not in encoded.cache:
        idx = np.searchsorted(groups["key"], groups["starts"] + end) - 1
        valid = idx >= 0
        valid[valid] = groups["key"][idx[valid]] >= groups["starts"][valid]
        encoded.cache[key] = np.where(valid, groups["day"][np.maximum(idx, 0)], -1)
    return encoded.cache[key]


def filtered(encoded: EncodedEvents, frame: pd.DataFrame, events: tuple[str, ...]) -> pd.DataFrame:
    """Rows of a pre-aggregated frame whose event is in the filter (all rows for an empty filter)."""
    if not events:
        return frame
    codes = [encoded.event_codes[e] for e in events if e in encoded.event_codes]
    return frame[frame["event"].isin(codes)]
