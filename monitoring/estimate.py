"""Estimated performance of a batch whose outcomes have not landed yet, from its own calibrated risks.

Confidence-based performance estimation: if a calibrated probability p is right, an account scored p
churns with probability p. The expected confusion matrix at every threshold then follows from the
probabilities alone (expected true positives above a cut = the sum of p above it), and with it the
expected ROC AUC, PR AUC, Brier score and lift. It is an ESTIMATE: it assumes the calibration still
holds, so it reacts to a change in who is being scored (covariate shift) but cannot see a change in
what drives churn (concept shift); only realised figures can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitoring.realised import TOP_SHARE


@dataclass
class Estimate:
    """Expected figures of one batch if its probabilities are right (label these as estimates)."""

    as_of: str
    version: str
    rows: int
    expected_churned: float
    roc_auc: float
    pr_auc: float
    brier: float
    lift_top_decile: float


def estimate(p: np.ndarray, as_of: str, version: str) -> Estimate:
    """Expected ROC AUC, PR AUC, Brier score and top-decile lift of probabilities `p`."""
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    pos, neg = p.sum(), (1 - p).sum()
    if not len(p) or pos <= 0 or neg <= 0:
        nan = float("nan")
        return Estimate(as_of, version, len(p), float(pos), nan, nan, float(np.mean(p * (1 - p))), nan)
    order = np.argsort(-p, kind="stable")  # thresholds from the highest risk down
    ranked = p[order]
    tp, fp = np.cumsum(ranked), np.cumsum(1 - ranked)
    last = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # the last row of each group of tied risks
    tpr = np.r_[0.0, tp[last] / pos]
    fpr = np.r_[0.0, fp[last] / neg]
    precision = tp[last] / (last + 1)
    top = order[: max(1, int(np.ceil(TOP_SHARE * len(p))))]
    return Estimate(
        as_of=as_of,
        version=version,
        rows=len(p),
        expected_churned=float(pos),
        roc_auc=float(np.trapezoid(tpr, fpr)),
        pr_auc=float(np.sum(np.diff(tpr) * precision)),
        brier=float(np.mean(p * (1 - p))),
        lift_top_decile=float(p[top].mean() / p.mean()),
    )
