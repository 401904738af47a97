"""Point-in-time features (and labels) for any list of as-of dates: the public face of `features`.

Training and scoring both call `build_features`; scoring passes the metric set logged with the
model, so both see exactly the same columns in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.engine import encode_events, window_metrics
from features.metrics import MetricSet, default_metric_set
from features.subscriptions import labels, subscription_features
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


def build_snapshots(tables: Tables, as_of_dates: list | pd.DatetimeIndex, horizon_days: int = 90, **kw) -> FeatureSet:
    """Training rows: features plus `churn` and `growth` labels, only where the horizon has elapsed."""
    dates = pd.DatetimeIndex(pd.to_datetime(list(as_of_dates))).normalize()
    dates = dates[dates + pd.Timedelta(days=horizon_days) <= tables.data_end]
    if len(dates) == 0:
        raise DataError(
            f"no as-of date leaves {horizon_days} days of outcome before the data ends on "
            f"{tables.data_end.date()}: the data has too little history to train on"
        )
    features = build_features(tables, dates, **kw)
    target = labels(tables.subscriptions, pd.DatetimeIndex(features.frame["as_of"].unique()), horizon_days)
    features.frame = features.frame.merge(target, on=KEYS, how="left", validate="one_to_one")
    return features


def monthly_dates(tables: Tables, horizon_days: int = 0, last: pd.Timestamp | None = None) -> pd.DatetimeIndex:
    """Month starts from the second month of data up to `last` (default: data end minus the horizon)."""
    first = tables.events["timestamp"].min().normalize() + pd.offsets.MonthBegin(2)
    last = last if last is not None else tables.data_end - pd.Timedelta(days=horizon_days)
    return pd.date_range(first, last, freq="MS")


def is_numeric(values: pd.Series) -> bool:
    """True for columns LightGBM should treat as numbers rather than categories."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
