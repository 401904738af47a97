"""Labelled snapshots from a data folder at a cadence the history allows, plus the facts a run must record.

Monthly snapshots when they leave room for the default rolling-origin backtest; weekly ones when the
history is too short for that (a young company); a refusal, saying how much more history is needed,
only when not even two honest out-of-time folds fit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.build import CADENCES, Cadence, FeatureSet, build_snapshots, first_snapshot, snapshot_dates
from features.metrics import MetricSet
from features.subscriptions import LabelRules
from features.tables import DataError, Tables
from features.uplift import PLAN, PeerUplift, book_uplift
from training.backtest import MIN_FOLDS, MIN_TRAIN_DATES, N_FOLDS, Fold, block_size, fold_plan, rolling_folds

TARGETS = ("churn", "growth")
DEFAULT_HORIZON_DAYS = 90  # a renewal quarter: the horizon CS teams plan on
MIN_AUTO_HORIZON_DAYS = 28  # shortest horizon chosen without being asked: a monthly plan's term


@dataclass
class Snapshots:
    """Training rows for both targets and where they came from."""

    tables: Tables
    features: FeatureSet
    horizon_days: int
    rules: LabelRules
    cadence: Cadence

    @property
    def frame(self) -> pd.DataFrame:
        return self.features.frame

    @property
    def window_days(self) -> int:
        """Days after an as-of date its labels look at: the horizon plus the churn grace period."""
        return self.rules.window_days(self.horizon_days)

    def folds(self) -> list[Fold]:
        """The rolling-origin folds over these snapshots (gap: the label window)."""
        return rolling_folds(self.frame["as_of"], self.window_days, self.cadence.days)


def snapshots(
    tables: Tables,
    horizon_days: int | None = None,
    as_of: pd.Timestamp | None = None,
    rules: LabelRules | None = None,
    metrics: MetricSet | None = None,
) -> Snapshots:
    """Snapshots up to `as_of` (default: data end minus the label window) whose label window has closed.

    Without `horizon_days`, the horizon is `default_horizon`: 90 days unless the history is too short.

    Raises:
        DataError: the horizon is not positive, the history is too short for an honest backtest
            (saying how much more is needed), no account is in force, or a target never happens.
    """
    rules = rules or LabelRules()
    if horizon_days is None:
        horizon_days = default_horizon(tables, rules)
    if horizon_days < 1:
        raise DataError(f"the horizon must be at least 1 day, not {horizon_days}")
    start = tables.events["timestamp"].min().normalize()
    if as_of is not None and pd.Timestamp(as_of) <= start:
        raise DataError(f"--as-of {pd.Timestamp(as_of).date()} is before the data starts ({start.date()}): no snapshot")
    last = tables.data_end - pd.Timedelta(days=rules.window_days(horizon_days))
    last = min(last, pd.Timestamp(as_of)) if as_of is not None else last
    cadence = choose_cadence(tables, horizon_days, rules, last)
    dates = snapshot_dates(tables, cadence, last=last)
    features = build_snapshots(tables, dates, horizon_days, rules, metrics=metrics)
    if features.frame.empty:
        raise DataError("no account is in force on any snapshot date: the data has too little history to train on")
    for target in TARGETS:
        if features.frame[target].sum() == 0:
            raise DataError(
                f"no positive {target} label in {len(features.frame):,} snapshots "
                f"({dates[0].date()} to {dates[-1].date()}): nothing to learn {target} from"
            )
    return Snapshots(tables, features, horizon_days, rules, cadence)


def default_horizon(tables: Tables, rules: LabelRules) -> int:
    """The horizon when none is asked for: 90 days, or the longest an honest backtest of this history fits.

    A young company's six months cannot hold two 90-day label windows, but they can train at a
    shorter horizon; below `MIN_AUTO_HORIZON_DAYS` the label would mean something else than a
    renewal-period churn, so the 90 days stand and the refusal says how much more history is needed.
    """
    fits = longest_horizon(tables, rules, DEFAULT_HORIZON_DAYS)
    return fits if fits is not None and fits >= MIN_AUTO_HORIZON_DAYS else DEFAULT_HORIZON_DAYS


def choose_cadence(tables: Tables, horizon_days: int, rules: LabelRules, last: pd.Timestamp) -> Cadence:
    """The coarsest cadence whose snapshot dates (up to `last`) fit the default backtest, else the finest that fits any.

    Monthly snapshots need `N_FOLDS` folds of a full quarter each; a shorter history gets weekly
    snapshots, with fewer folds or shorter blocks, as long as `MIN_FOLDS` honest folds fit.

    Raises:
        DataError: not even the finest cadence fits `MIN_FOLDS` folds; says how many more days of
            history would.
    """
    window = rules.window_days(horizon_days)
    for cadence in CADENCES:
        plan = fold_plan(snapshot_dates(tables, cadence, last=last), window, block_size(cadence.days))
        if plan == (N_FOLDS, block_size(cadence.days)) or (plan and cadence == CADENCES[-1]):
            return cadence
    finest = CADENCES[-1]
    more = (last_date_needed(tables, finest, window) - last).days
    cut = last < tables.data_end - pd.Timedelta(days=window)
    grace = f" plus {rules.churn_grace_days} days' churn grace" if rules.churn_grace_days else ""
    shorter = None if cut else longest_horizon(tables, rules, horizon_days - 1)
    raise DataError(
        f"too little history for an honest out-of-time backtest: needs about {more} more days of history "
        f"(a {horizon_days}-day horizon{grace}, {MIN_FOLDS} folds of {finest.name} snapshots); the events run "
        f"{tables.events['timestamp'].min().date()} to {tables.data_end.date()}"
        + (f" and --as-of is {last.date()}" if cut else "")
        + (f"; a --horizon-days of {shorter} fits this history" if shorter else "")
    )


def longest_horizon(tables: Tables, rules: LabelRules, at_most: int) -> int | None:
    """The longest horizon up to `at_most` days whose smallest honest backtest fits the data, if any."""
    for horizon in range(at_most, 0, -1):
        window = rules.window_days(horizon)
        if last_date_needed(tables, CADENCES[-1], window) <= tables.data_end - pd.Timedelta(days=window):
            return horizon
    return None


def last_date_needed(tables: Tables, cadence: Cadence, window_days: int) -> pd.Timestamp:
    """The last snapshot date the smallest honest backtest at `cadence` needs.

    `MIN_TRAIN_DATES` training dates, the first validation date a label window after the last of them,
    and `MIN_FOLDS` validation dates in all, one per fold.
    """
    grid = pd.date_range(first_snapshot(tables), periods=MIN_TRAIN_DATES, freq=cadence.freq)
    first_valid = pd.date_range(grid[-1] + pd.Timedelta(days=window_days), periods=MIN_FOLDS, freq=cadence.freq)
    return first_valid[-1]


def fingerprint(tables: Tables) -> str:
    """A content hash of the three input tables, so a run names exactly the data it saw."""
    digest = hashlib.sha256()
    for frame in (tables.accounts, tables.subscriptions, tables.events):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def mean_uplift(snap: Snapshots) -> float:
    """Mean relative ARR increase ARR(T+H)/ARR(T) - 1 of growth-positive snapshots: the book-wide figure.

    The `uplift` the labels computed, on the rows the growth rule (with its minimum increase) counted.
    """
    return book_uplift(snap.frame)


def uplift_peers(snap: Snapshots, rows: np.ndarray | None = None) -> PeerUplift:
    """The uplift each peer group achieved, for expected expansion: by plan when it is a feature, else ARR band.

    Args:
        rows: bool mask of the snapshots to learn from (a backtest fold's training rows); default all.
    """
    frame = snap.frame if rows is None else snap.frame[rows]
    return PeerUplift.fit(frame, by_plan=PLAN in snap.features.names)
