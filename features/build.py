"""Point-in-time features (and labels) for any list of as-of dates: the public face of `features`.

Training and scoring both call `build_features`; scoring passes the metric set logged with the
model, so both see exactly the same columns in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.engine import encode_events, window_metrics
from features.metrics import MetricSet, default_metric_set
from features.subscriptions import LabelRules, labels, subscription_features
from features.tables import DataError, Tables

KEYS = ["account_id", "as_of"]
INFO = ["insufficient_history", "renewal_date"]
CONTRACT = {  # name: (description, actionable by a CSM)
    "arr": ("annual recurring revenue", False),
    "seats": ("licensed seats", False),
    "seat_utilisation": ("seat utilisation (active users in 30 days / seats)", True),
    "arr_change_90d": ("change in ARR over the last 90 days", False),
    "days_to_renewal": ("days until the current term renews", False),
    "term_length_days": ("length of the current term in days", False),
    "tenure_days": ("days since the account was created", False),
    "lifecycle_stage": ("lifecycle stage (onboarding until the first renewal)", False),
}
NOT_FIRMOGRAPHIC = {"account_id", "created_at"}
MIN_HISTORY_DAYS = 30
MIN_WARM_UP_DAYS = 7  # the shortest metric window: no snapshot before a week of events


@dataclass(frozen=True)
class Cadence:
    """How often training snapshots are taken: a pandas frequency and its nominal length in days."""

    name: str
    freq: str
    days: int


MONTHLY = Cadence("monthly", "MS", 30)
WEEKLY = Cadence("weekly", "W-MON", 7)
CADENCES = (MONTHLY, WEEKLY)  # coarsest first: a finer cadence only when the history is too short for it


@dataclass
class FeatureSet:
    """Feature rows plus what a model and a CSM need to know about each column."""

    frame: pd.DataFrame  # KEYS + INFO + names
    names: list[str]
    categorical: list[str]
    descriptions: dict[str, str]
    families: dict[str, str]
    actionable: dict[str, bool]
    metrics: MetricSet

    @property
    def matrix(self) -> pd.DataFrame:
        """The model's input columns, in the model's order."""
        return self.frame[self.names]


def build_features(
    tables: Tables,
    as_of_dates: list | pd.DatetimeIndex,
    metrics: MetricSet | None = None,
    min_history_days: int = MIN_HISTORY_DAYS,
) -> FeatureSet:
    """Features for every account in force at each as-of date, seeing only data before that date.

    Args:
        tables: validated input tables.
        as_of_dates: one or many dates; all are answered from one pass over the events.
        metrics: the metric set to compute; by default derived from the event types present
            (plus `features/metrics.yaml`). Scoring passes the set logged with the model.
        min_history_days: accounts younger than this get `insufficient_history = True`.
    """
    dates = pd.DatetimeIndex(pd.to_datetime(list(as_of_dates))).normalize().unique().sort_values()
    if len(dates) == 0:
        raise DataError("no as-of dates given")
    metrics = metrics or default_metric_set(sorted(tables.events["event"].unique()))
    contract = subscription_features(tables, dates)
    windows = window_metrics(encode_events(tables), metrics, dates)
    frame = contract.merge(windows, on=KEYS, how="left")
    frame["seat_utilisation"] = frame["activity__users_30d"] / frame["seats"].where(frame["seats"] > 0)
    for d in metrics.derived:
        frame[d.name] = d.values(frame)
    firmographics = [c for c in tables.accounts.columns if c not in NOT_FIRMOGRAPHIC]
    frame = frame.join(tables.accounts.set_index("account_id")[firmographics], on="account_id")
    frame["insufficient_history"] = frame["tenure_days"] < min_history_days
    names = metrics.feature_names + list(CONTRACT) + firmographics
    categorical = ["lifecycle_stage"] + [c for c in firmographics if not is_numeric(tables.accounts[c])]
    for col in categorical:
        frame[col] = frame[col].astype("string").astype("category")
    frame = frame.sort_values(KEYS, ignore_index=True)
    return FeatureSet(
        frame=frame[KEYS + INFO + names],
        names=names,
        categorical=categorical,
        descriptions=metrics.descriptions | {k: v[0] for k, v in CONTRACT.items()} | {c: c for c in firmographics},
        families=metrics.families
        | {k: k for k in CONTRACT}
        | {"seat_utilisation": "active_users"}
        | {c: c for c in firmographics},
        actionable={n: True for n in metrics.feature_names}
        | {k: v[1] for k, v in CONTRACT.items()}
        | dict.fromkeys(firmographics, False),
        metrics=metrics,
    )


def build_snapshots(
    tables: Tables,
    as_of_dates: list | pd.DatetimeIndex,
    horizon_days: int = 90,
    rules: LabelRules | None = None,
    **kw,
) -> FeatureSet:
    """Training rows: features, `churn` and `growth` labels and the ARR `uplift`, where the label window closed.

    The label window is the horizon plus the churn grace period (`LabelRules.window_days`): a date
    whose window runs past the data's end cannot know its outcome and is left out.
    """
    rules = rules or LabelRules()
    window = rules.window_days(horizon_days)
    dates = pd.DatetimeIndex(pd.to_datetime(list(as_of_dates))).normalize()
    dates = dates[dates + pd.Timedelta(days=window) <= tables.data_end]
    if len(dates) == 0:
        raise DataError(
            f"no as-of date leaves {window} days of outcome ({horizon_days}-day horizon + "
            f"{rules.churn_grace_days} days' churn grace) before the data ends on "
            f"{tables.data_end.date()}: the data has too little history to train on"
        )
    features = build_features(tables, dates, **kw)
    target = labels(tables.subscriptions, pd.DatetimeIndex(features.frame["as_of"].unique()), horizon_days, rules)
    features.frame = features.frame.merge(target, on=KEYS, how="left", validate="one_to_one")
    return features


def snapshot_dates(
    tables: Tables, cadence: Cadence = MONTHLY, window_days: int = 0, last: pd.Timestamp | None = None
) -> pd.DatetimeIndex:
    """As-of dates at `cadence` from the end of the warm-up up to `last` (default: data end minus `window_days`)."""
    last = last if last is not None else tables.data_end - pd.Timedelta(days=window_days)
    return pd.date_range(first_snapshot(tables), last, freq=cadence.freq)


def first_snapshot(tables: Tables) -> pd.Timestamp:
    """The earliest as-of date worth a snapshot: the first event plus a warm-up.

    Accounts created before the export starts have history it does not hold, so their 30-day
    windows are only whole a month in: the warm-up is the days the export misses of the oldest
    account, between a week and `MIN_HISTORY_DAYS`. A young company's export starts with its
    first account, so a week of events is enough and a six-month history keeps its snapshots.
    """
    start = tables.events["timestamp"].min().normalize()
    missed = (start - tables.accounts["created_at"].min()).days
    return start + pd.Timedelta(days=min(max(missed, MIN_WARM_UP_DAYS), MIN_HISTORY_DAYS))


def is_numeric(values: pd.Series) -> bool:
    """True for columns LightGBM should treat as numbers rather than categories."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
