"""Realised performance: how good a past batch's churn risk turned out, once its horizon has elapsed.

The outcome of a batch scored as of T is the churn label training uses (`features.subscriptions.labels`
with the horizon and label rules stored with the model's run), so a realised figure is measured on
exactly the question the model was trained to answer. A batch is judged only when its whole label
window (horizon plus churn grace period) lies inside the data.

The `degraded` rule (docs/monitoring.md): a batch is degraded when the upper end of the confidence
interval of its realised ROC AUC (Hanley & McNeil's standard error) lies below the ROC AUC the model
version's backtest promised. The interval is one-sided and Bonferroni-widened over the version's
judged batches, so a version judged on many batches does not raise a false alarm more often than
one judged on one. Small batches get wide intervals, so they alarm only on a large fall.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from features.policy import TOUCHED
from features.subscriptions import LabelRules, labels

CONFIDENCE = 0.95  # family-wise, per model version
RELIABILITY_BINS = 10
TOP_SHARE = 0.10  # the top decile of the lift


@dataclass
class Realised:
    """One batch's realised figures (NaN where a figure is undefined, e.g. no churner in the batch)."""

    as_of: str
    version: str
    rows: int
    churned: int
    expected_churned: float  # sum of the batch's probabilities: what the model said would churn
    roc_auc: float
    roc_auc_se: float  # Hanley & McNeil
    pr_auc: float
    brier: float
    lift_top_decile: float
    arr_recall_touched: float  # share of the churned ARR that sat in high and mid touch
    reliability: list[dict] = field(default_factory=list)  # {predicted, observed, rows} per equal-count bin
    seen_in_training: bool = False  # the version trained on this date's outcomes: its figures flatter it
    margin: float = float("nan")  # z * se: how far below the promise the AUC may fall before `degraded`
    degraded: bool = False


def label_window_days(horizon_days: int, rules: LabelRules) -> int:
    """Days after a batch's as-of date its outcome needs: the horizon plus the churn grace period."""
    return rules.window_days(horizon_days)


def is_matured(as_of: pd.Timestamp, data_end: pd.Timestamp, horizon_days: int, rules: LabelRules) -> bool:
    """Whether a batch's outcomes are all visible: its label window ends by the data's end."""
    return pd.Timestamp(as_of) + pd.Timedelta(days=label_window_days(horizon_days, rules)) <= data_end


def outcomes(subscriptions: pd.DataFrame, batch: pd.DataFrame, horizon_days: int, rules: LabelRules) -> pd.DataFrame:
    """The batch's rows with their realised `churn` (accounts not in force at the as-of date are left out)."""
    dates = pd.DatetimeIndex(pd.to_datetime(batch["as_of"]).dt.normalize().unique())
    truth = labels(subscriptions, dates, horizon_days, rules)[["account_id", "as_of", "churn"]]
    keyed = batch.assign(
        as_of=pd.to_datetime(batch["as_of"]).dt.normalize(), account_id=batch["account_id"].astype(str)
    )
    return keyed.merge(truth, on=["account_id", "as_of"], how="inner")


def realised(rows: pd.DataFrame, as_of: str, version: str) -> Realised:
    """Every realised figure of one batch from its rows (`churn`, `churn_risk`, `arr`, `tier`)."""
    y = rows["churn"].to_numpy(dtype=int)
    p = rows["churn_risk"].to_numpy(dtype=float)
    arr = rows["arr"].to_numpy(dtype=float)
    both = 0 < y.sum() < len(y)
    auc = float(roc_auc_score(y, p)) if both else float("nan")
    churned_arr = float((arr * y).sum())
    touched = rows["tier"].isin(TOUCHED).to_numpy() if "tier" in rows else np.zeros(len(y), bool)
    return Realised(
        as_of=as_of,
        version=version,
        rows=len(y),
        churned=int(y.sum()),
        expected_churned=float(p.sum()),
        roc_auc=auc,
        roc_auc_se=auc_standard_error(auc, int(y.sum()), int(len(y) - y.sum())),
        pr_auc=float(average_precision_score(y, p)) if both else float("nan"),
        brier=float(brier_score_loss(y, p)) if len(y) else float("nan"),
        lift_top_decile=top_decile_lift(y, p),
        arr_recall_touched=float((arr * y * touched).sum() / churned_arr) if churned_arr > 0 else float("nan"),
        reliability=reliability(y, p),
    )


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982) standard error of a ROC AUC from its value and the class counts."""
    if not (positives and negatives) or not np.isfinite(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (
        positives * negatives
    )
    return float(np.sqrt(max(var, 0.0)))


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Churn rate among the 10% highest risks over the batch's churn rate (NaN with no churner)."""
    if y.sum() == 0:
        return float("nan")
    top = np.argsort(-p, kind="stable")[: max(1, int(np.ceil(TOP_SHARE * len(p))))]
    return float(y[top].mean() / y.mean())


def reliability(y: np.ndarray, p: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Mean predicted risk and observed churn rate per bin of about equal count (ties share a bin)."""
    if not len(p):
        return []
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1]))
    which = np.searchsorted(edges, p, side="right")
    return [
        {
            "predicted": float(p[which == b].mean()),
            "observed": float(y[which == b].mean()),
            "rows": int((which == b).sum()),
        }
        for b in np.unique(which)
    ]


def judge(batches: list[Realised], promised_auc: float, confidence: float = CONFIDENCE) -> list[Realised]:
    """Set `margin` and `degraded` on one version's judged batches against its backtest's ROC AUC.

    The margin is z * se with z the one-sided quantile at 1 - (1 - confidence) / (batches judged):
    the chance that any batch of a version that still keeps its promise is called degraded stays
    below 1 - confidence. Batches without both outcomes, or a version without a promise, are not judged.
    """
    judged = [b for b in batches if np.isfinite(b.roc_auc_se)]
    if not judged or not np.isfinite(promised_auc):
        return batches
    z = float(norm.ppf(1 - (1 - confidence) / len(judged)))
    for b in judged:
        b.margin = z * b.roc_auc_se
        b.degraded = bool(b.roc_auc + b.margin < promised_auc)
    return batches
