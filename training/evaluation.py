"""Metrics a CS leader and a data scientist both need, computed the same way for every model.

Ranking quality (ROC AUC, PR AUC), probability quality (Brier, expected calibration error) and
what the ranking buys a capacity-limited team (lift in the top decile, share of the ARR at stake
caught in the top K accounts). Every model and baseline is scored by `evaluate`, so the side by
side comparison is like for like.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile", "arr_recall_top_k")
ECE_BINS = 10
CAPACITY_SHARE = 0.10  # default K: 10% of the accounts in force on each as-of date


def evaluate(
    y: np.ndarray, p: np.ndarray, arr: np.ndarray, groups: np.ndarray, capacity: int | None = None
) -> dict[str, float]:
    """All metrics for one set of out-of-time predictions.

    Args:
        y: 0/1 outcomes.
        p: calibrated probabilities.
        arr: ARR of each account at its as-of date (the value at stake).
        groups: the as-of date of each row; the top K is taken per date, as a team would each month.
        capacity: K accounts the team can cover per date; default 10% of the accounts on that date.
    """
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    both = 0 < y.sum() < len(y)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "lift_top_decile": lift_top_decile(y, p),
        "arr_recall_top_k": arr_recall_top_k(y, p, np.asarray(arr, dtype=float), np.asarray(groups), capacity),
    }


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |observed rate - mean predicted| over equal-count bins, weighted by bin size.

    Equal-count bins (rather than equal-width) keep every bin populated when the base rate is
    low, as it is for churn; tied scores always share a bin.
    """
    gaps = [abs(y[idx].mean() - p[idx].mean()) * len(idx) for idx in quantile_bins(p, bins)]
    return float(np.sum(gaps) / len(y))


def quantile_bins(p: np.ndarray, bins: int) -> list[np.ndarray]:
    """Row indices per bin of (about) equal count, cut at score quantiles so ties stay together."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1]))
    which = np.searchsorted(edges, p, side="right")
    return [np.flatnonzero(which == b) for b in np.unique(which)]


def lift_top_decile(y: np.ndarray, p: np.ndarray) -> float:
    """Outcome rate among the 10% highest scores divided by the overall rate."""
    if y.sum() == 0:
        return float("nan")
    top = np.argsort(-p, kind="stable")[: max(1, int(np.ceil(0.1 * len(p))))]
    return float(y[top].mean() / y.mean())


def arr_recall_top_k(y: np.ndarray, p: np.ndarray, arr: np.ndarray, groups: np.ndarray, capacity: int | None) -> float:
    """Share of the ARR of positive accounts that falls in the top K by value at stake (p * ARR), per date.

    Ranking by p * ARR is how the tiers fill high touch, so this is the ARR the team would
    actually reach.
    """
    caught = total = 0.0
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        k = capacity or max(1, int(round(CAPACITY_SHARE * len(idx))))
        top = idx[np.argsort(-(p[idx] * arr[idx]), kind="stable")[:k]]
        caught += float((arr[top] * y[top]).sum())
        total += float((arr[idx] * y[idx]).sum())
    return caught / total if total > 0 else float("nan")


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted, observed rate) per equal-count bin: the points of a reliability curve."""
    parts = quantile_bins(p, bins)
    return np.array([p[i].mean() for i in parts]), np.array([y[i].mean() for i in parts])
