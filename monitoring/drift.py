"""Drift: do the newest batch's inputs and risks still look like what the model learned from?

Population stability index (PSI) per feature, between the training window's profile (logged with
the run by training: `features.profile`) and the newest batch's features, binned with the same
edges; and the same index on the churn risk, between the first batch the version scored and the
newest (prediction drift). PSI is written here with numpy rather than taken from a monitoring
library: Evidently is not in our lock and NannyML and whylogs conflict with our pins
(docs/architecture.md). A PSI of 0.1 is the usual "moderate" shift and 0.25 the usual "major"
one; `drift` is raised only for a major shift in one of the model's most important features or
in the risk itself, because a shift in a feature the model barely uses changes nothing it says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.profile import profile_entry, shares

MODERATE_PSI = 0.10
MAJOR_PSI = 0.25
FLOOR = 1e-4  # an empty bin counts as this share, so PSI stays finite


@dataclass
class FeatureDrift:
    """One feature's PSI and its place in the model's importance ranking (1 = most important)."""

    feature: str
    psi: float
    importance_rank: int
    top: bool  # among the features whose major drift raises `drift`


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: sum over bins of (actual - expected) * ln(actual / expected)."""
    e = np.clip(np.asarray(expected, dtype=float), FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=float), FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_drift(profile: dict, frame: pd.DataFrame, ranking: list[str], top_n: int) -> list[FeatureDrift]:
    """PSI of every profiled feature present in `frame`, most drifted first.

    Args:
        profile: the training run's `feature_profile.json`.
        frame: the newest batch's feature rows.
        ranking: the model's features, most important first (gain).
        top_n: how many of the most important features a major drift alarms on.
    """
    rank = {name: i + 1 for i, name in enumerate(ranking)}
    out = [
        FeatureDrift(name, psi(entry["shares"], shares(entry, frame[name])), rank.get(name, len(rank) + 1), False)
        for name, entry in profile["features"].items()
        if name in frame.columns
    ]
    for d in out:
        d.top = d.importance_rank <= top_n
    return sorted(out, key=lambda d: -d.psi)


def prediction_drift(reference: np.ndarray, latest: np.ndarray) -> float:
    """PSI of the churn risk between a reference batch and the newest, on the reference's deciles."""
    entry = profile_entry(pd.Series(np.asarray(reference, dtype=float)))
    return psi(entry["shares"], shares(entry, pd.Series(np.asarray(latest, dtype=float))))


def importance_ranking(booster, names: list[str]) -> list[str]:
    """The model's features by total gain, most important first (ties keep the model's order)."""
    gain = booster.feature_importance(importance_type="gain")
    return [names[i] for i in np.argsort(-gain, kind="stable")]
