"""Point-in-time features (and labels) for any list of as-of dates: the public face of `features`.

Training and scoring both call `build_features`; scoring passes the metric set logged with the
model, so both see exactly the same columns in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from features.attributes import AttributeScreen, screen_attributes
from features.engine import encode_events, window_metrics
from features.metrics import ALL_EVENTS, SEAT_UTILISATION, MetricSet, default_metric_set
from features.subscriptions import LabelRules, labels, subscription_features
from features.tables import DataError, Tables

KEYS = ["account_id", "as_of"]
INFO = ["insufficient_history", "renewal_date"]
# name: (description, actionable by a CSM, direction as in `features.metrics.DIRECTIONS`). Only seat
# utilisation has a direction that holds in every book (more of the seats paid for in use is healthier);
# a contract's size, age, term and distance to renewal move risk either way, so the model learns them.
CONTRACT = {
    "arr": ("annual recurring revenue", False, 0),
    "seats": ("licensed seats", False, 0),
    "seat_utilisation": ("seat utilisation (active users in 30 days / seats)", True, 1),
    "arr_change_90d": ("change in ARR over the last 90 days", False, 0),
    "days_to_renewal": ("days until the current term renews", False, 0),
    "term_length_days": ("days in the current term", False, 0),
    "tenure_days": ("days since the account was created", False, 0),
    "lifecycle_stage": ("lifecycle stage (onboarding until the first renewal)", False, 0),
}
MIN_HISTORY_DAYS = 30
USERS_30D = f"{ALL_EVENTS}__users_30d"  # the active users seat utilisation divides by seats
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
    directions: dict[str, int]  # what more of each feature means (+1 healthier, -1 unhealthier, 0 undeclared)
    metrics: MetricSet  # with the attribute columns chosen, as a model stores it
    attribute_screen: AttributeScreen | None = None  # what the screen decided, when this build ran it

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
            (plus `features/metrics.yaml`). A set whose attribute columns are not chosen yet has
            them screened here (`features.attributes`); scoring passes the set logged with the
            model, whose attribute columns are used exactly as stored.
        min_history_days: accounts younger than this get `insufficient_history = True`.
    """
    dates = pd.DatetimeIndex(pd.to_datetime(list(as_of_dates))).normalize().unique().sort_values()
    if len(dates) == 0:
        raise DataError("no as-of dates given")
    metrics = metrics or metric_set_for(tables)
    if metrics.uses_users and not tables.has_users:
        raise DataError(
            "events: no user_id (the column is absent or empty), but the metric set counts users "
            "(a model trained on events with user ids): retrain on these tables, or export user_id"
        )
    metrics, screen = with_attributes(tables, metrics)
    attributes = list(metrics.attributes.chosen)
    contract = subscription_features(tables, dates)
    engine = tables.windows or (lambda metrics, dates: window_metrics(encode_events(tables, metrics), metrics, dates))
    windows = engine(metrics, dates)
    frame = contract.merge(windows, on=KEYS, how="left")
    contract_names = [c for c in CONTRACT if c != SEAT_UTILISATION or USERS_30D in frame]
    if SEAT_UTILISATION in contract_names:
        frame[SEAT_UTILISATION] = frame[USERS_30D] / frame["seats"].where(frame["seats"] > 0)
    for d in metrics.derived:
        frame[d.name] = d.values(frame)
    frame = frame.join(tables.accounts.set_index("account_id")[attributes], on="account_id")
    frame["insufficient_history"] = frame["tenure_days"] < min_history_days
    names = metrics.feature_names + contract_names + attributes
    categorical = ["lifecycle_stage"] + [c for c in attributes if not is_numeric(tables.accounts[c])]
    for col in categorical:
        frame[col] = frame[col].astype("string").astype("category")
    frame = frame.sort_values(KEYS, ignore_index=True)
    contract_info = {k: CONTRACT[k] for k in contract_names}
    return FeatureSet(
        frame=frame[KEYS + INFO + names],
        names=names,
        categorical=categorical,
        descriptions=metrics.descriptions | {k: v[0] for k, v in contract_info.items()} | {c: c for c in attributes},
        families=metrics.families
        | {k: k for k in contract_info}
        | ({SEAT_UTILISATION: "active_users"} if SEAT_UTILISATION in contract_info else {})
        | {c: c for c in attributes},
        actionable={n: True for n in metrics.feature_names}
        | {k: v[1] for k, v in contract_info.items()}
        | dict.fromkeys(attributes, False),
        directions={n: (metrics.directions | {k: v[2] for k, v in contract_info.items()}).get(n, 0) for n in names},
        metrics=metrics,
        attribute_screen=screen,
    )


def metric_set_for(tables: Tables, yaml_path: Path | None = None) -> MetricSet:
    """The default metric set for these tables: their event types, user-based metrics only with user ids.

    `yaml_path` replaces the shipped `features/metrics.yaml` (see `default_metric_set`).
    """
    return default_metric_set(sorted(tables.events["event"].unique()), yaml_path, users=tables.has_users)


def with_attributes(tables: Tables, metrics: MetricSet) -> tuple[MetricSet, AttributeScreen | None]:
    """The metric set with its attribute columns decided: screened now (training), or as stored (scoring).

    Raises:
        DataError: the accounts table lacks an attribute column the model was trained with.
    """
    if metrics.attributes.chosen is None:
        screen = screen_attributes(tables, metrics.attributes)
        return replace(metrics, attributes=replace(metrics.attributes, chosen=screen.chosen)), screen
    missing = [c for c in metrics.attributes.chosen if c not in tables.accounts.columns]
    if missing:
        raise DataError(f"accounts: missing attribute column(s) {', '.join(missing)} that the model was trained with")
    return metrics, None


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
