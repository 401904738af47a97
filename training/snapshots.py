"""Labelled monthly snapshots from a data folder, plus the facts about the data a run must record."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.build import FeatureSet, build_snapshots, monthly_dates
from features.metrics import MetricSet
from features.subscriptions import contract_state
from features.tables import DataError, Tables

TARGETS = ("churn", "growth")
FALLBACK_UPLIFT = 0.2  # relative ARR increase assumed for growth when the data shows no growth at all


@dataclass
class Snapshots:
    """Training rows for both targets and where they came from."""

    tables: Tables
    features: FeatureSet
    horizon_days: int

    @property
    def frame(self) -> pd.DataFrame:
        return self.features.frame


def snapshots(
    tables: Tables, horizon_days: int = 90, as_of: pd.Timestamp | None = None, metrics: MetricSet | None = None
) -> Snapshots:
    """Month-start snapshots up to `as_of` (default: data end minus the horizon) whose horizon has elapsed.

    Raises:
        DataError: no snapshot fits in the data, or a target never happens.
    """
    last = pd.Timestamp(as_of) if as_of is not None else None
    dates = monthly_dates(tables, horizon_days, last=last)
    features = build_snapshots(tables, dates, horizon_days, metrics=metrics)
    if features.frame.empty:
        raise DataError("no account is in force on any snapshot date: the data has too little history to train on")
    for target in TARGETS:
        if features.frame[target].sum() == 0:
            raise DataError(
                f"no positive {target} label in {len(features.frame):,} snapshots "
                f"({dates[0].date()} to {dates[-1].date()}): nothing to learn {target} from"
            )
    return Snapshots(tables, features, horizon_days)


def fingerprint(tables: Tables) -> str:
    """A content hash of the three input tables, so a run names exactly the data it saw."""
    digest = hashlib.sha256()
    for frame in (tables.accounts, tables.subscriptions, tables.events):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def mean_uplift(snap: Snapshots) -> float:
    """Mean relative ARR increase ARR(T+H)/ARR(T) - 1 of growth-positive snapshots (for expected expansion)."""
    grown = snap.frame.loc[snap.frame["growth"] == 1, ["account_id", "as_of", "arr"]]
    if grown.empty:
        return FALLBACK_UPLIFT
    shift = pd.Timedelta(days=snap.horizon_days)
    later = contract_state(snap.tables.subscriptions, pd.DatetimeIndex(grown["as_of"].unique()) + shift)
    later = later.assign(as_of=later["as_of"] - shift)[["account_id", "as_of", "arr"]]
    both = grown.merge(later, on=["account_id", "as_of"], suffixes=("", "_later"))
    ratio = both["arr_later"] / both["arr"].where(both["arr"] > 0) - 1
    ratio = ratio[np.isfinite(ratio)]
    return float(ratio.mean()) if len(ratio) else FALLBACK_UPLIFT
