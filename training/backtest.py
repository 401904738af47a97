"""Rolling-origin backtest: every fold trains only on snapshots whose outcome was known before it.

A fold has an origin date F and validates on the snapshots of about the next quarter from F. It
trains on snapshots with as_of + label window <= F (the window is the horizon plus the churn grace
period), i.e. whose outcome was known by F, so no fold sees an account's future in its past. Inside
the training window the latest snapshots form the slice that stops boosting and fits the fold's
Platt calibration; the fold model is then refitted on the whole window with that many rounds
(the model that ships is not refitted: `training.shipped`). A short history gets fewer folds and
shorter blocks, never a fold that breaks that rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.metrics import HEALTH_EFFECT
from features.tables import DataError
from training import calibration, model
from training.baselines import baseline_predictions
from training.evaluation import evaluate

N_FOLDS = 3  # folds when the history allows
MIN_FOLDS = 2  # one fold cannot tell a model's skill from its luck on one period
BLOCK_DAYS = 91  # each fold validates on about a quarter of snapshots
MIN_TRAIN_DATES = 2  # a fold's window must split into an early-stopping slice and snapshots before it
BASELINES = ("health", "logreg", "plain_gbm")  # prediction columns of the baselines, when they ran
LIFT = "lift_over_plain_gbm"  # metric prefix: the model's metric minus the plain gradient-boosting baseline's
LIFT_METRICS = ("roc_auc", "pr_auc")  # the ranking metrics a model must beat the plain baseline on


@dataclass
class Fold:
    """Row masks of one fold over the snapshot frame."""

    index: int
    origin: pd.Timestamp
    train: np.ndarray  # bool: label window closed by the origin
    valid: np.ndarray  # bool: as-of in [origin, next origin)

    @property
    def name(self) -> str:
        return f"fold {self.index}" + (f" (origin {self.origin.date()})" if pd.notna(self.origin) else "")


@dataclass
class Backtest:
    """Out-of-time predictions and metrics of the model and the baselines for one target."""

    target: str
    folds: list[Fold]
    predictions: pd.DataFrame  # account_id, as_of, fold, y, arr, margin, p, health, logreg, plain_gbm
    fold_metrics: dict[int, dict[str, dict[str, float]]]  # fold -> model -> metric -> value
    overall: dict[str, dict[str, float]]  # model -> metric -> value
    rounds: list[int] = field(default_factory=list)  # early-stopped rounds per fold

    @property
    def final_rounds(self) -> int:
        """Rounds for the final model: the median chosen across folds."""
        return int(np.median(self.rounds))


def block_size(cadence_days: int) -> int:
    """Snapshots per validation block at a cadence: a quarter (3 monthly, 13 weekly)."""
    return max(1, round(BLOCK_DAYS / cadence_days))


def fold_plan(dates: pd.DatetimeIndex, gap_days: int, block: int, n_folds: int = N_FOLDS) -> tuple[int, int] | None:
    """(folds, snapshots per block) the sorted dates allow, or None when not even `MIN_FOLDS` fit.

    Only dates at least `gap_days` after the `MIN_TRAIN_DATES`-th date can be validated on (the
    first fold needs that many training dates whose label window has closed). Those dates are
    split into as many folds as fit, up to `n_folds`, each at most `block` snapshots long.
    """
    if len(dates) < MIN_TRAIN_DATES:
        return None
    first = np.searchsorted(dates, dates[MIN_TRAIN_DATES - 1] + pd.Timedelta(days=gap_days))
    available = len(dates) - first
    folds = min(n_folds, available)
    return (folds, min(block, available // folds)) if folds >= MIN_FOLDS else None


def rolling_folds(as_of: pd.Series, gap_days: int, cadence_days: int = 30, n_folds: int = N_FOLDS) -> list[Fold]:
    """Folds over the last snapshot dates, each validating on a block of dates from its origin on.

    Args:
        as_of: the snapshot frame's as-of column (fold masks are over its rows).
        gap_days: the label window (horizon plus churn grace): a fold trains only on rows whose
            window closed by its origin.
        cadence_days: the snapshot cadence, which sizes the validation blocks (`block_size`).

    Raises:
        DataError: too few snapshot dates for `MIN_FOLDS` folds with closed training windows.
    """
    dates = pd.DatetimeIndex(np.sort(as_of.unique()))
    plan = fold_plan(dates, gap_days, block_size(cadence_days), n_folds)
    if plan is None:
        raise DataError(
            f"too little history for a {MIN_FOLDS}-fold rolling-origin backtest: {len(dates)} snapshot date(s) "
            f"with a {gap_days}-day label window; each fold needs snapshots whose outcome is known before it"
        )
    n, block = plan
    gap = pd.Timedelta(days=gap_days)
    folds = []
    for i, origin in enumerate(dates[len(dates) - n * block :: block]):
        end = dates[min(len(dates) - 1, dates.get_loc(origin) + block - 1)]
        train = (as_of + gap <= origin).to_numpy()
        valid = ((as_of >= origin) & (as_of <= end)).to_numpy()
        folds.append(Fold(i + 1, pd.Timestamp(origin), train, valid))
    return folds


def late_slice(as_of: pd.Series, mask: np.ndarray, gap_days: int):
    """(earlier, later) masks inside `mask`: its last quarter (at most half its dates) and rows closed before it.

    When no row's label window closes before the slice (a very short window), `earlier` falls back to
    the rows before the slice: a plain time split inside the fold's training window, which still never
    touches its validation rows.
    """
    dates = pd.DatetimeIndex(np.sort(as_of[mask].unique()))
    if len(dates) < 2:
        raise DataError(f"a training window of {len(dates)} snapshot date(s) is too short to stop boosting early")
    quarter = int((dates > dates[-1] - pd.Timedelta(days=BLOCK_DAYS)).sum())
    start = dates[len(dates) - max(1, min(quarter, len(dates) // 2))]
    later = mask & (as_of >= start).to_numpy()
    earlier = mask & (as_of + pd.Timedelta(days=gap_days) <= start).to_numpy()
    if not earlier.any():
        earlier = mask & (as_of < start).to_numpy()
    return earlier, later


def run_backtest(
    frame: pd.DataFrame,
    X: pd.DataFrame,
    target: str,
    categorical: list[str],
    gap_days: int,
    params: dict,
    max_rounds: int = model.MAX_ROUNDS,
    capacity: int | None = None,
    folds: list[Fold] | None = None,
    inner: Callable[[Fold], tuple[np.ndarray, np.ndarray]] | None = None,
) -> Backtest:
    """Fit and score the model and the baselines on every fold; metrics per fold and pooled.

    Args:
        gap_days: the label window (horizon plus churn grace) that separates training from later rows.
        folds: defaults to monthly `rolling_folds`; table mode passes stratified folds.
        inner: (earlier, later) split of a fold's training rows for early stopping and calibration;
            defaults to the time-ordered `late_slice`.
    """
    y = frame[target].to_numpy(dtype=int)
    folds = folds or rolling_folds(frame["as_of"], gap_days)
    inner = inner or (lambda fold: late_slice(frame["as_of"], fold.train, gap_days))
    parts, fold_metrics, rounds = [], {}, []
    for fold in folds:
        check_classes(y[fold.train], target, fold.name)
        margin, p, n_rounds = fold_model(X, y, fold, *inner(fold), params, max_rounds)
        rounds.append(n_rounds)
        part = frame.loc[fold.valid, ["account_id", "as_of", "arr"]].assign(fold=fold.index, y=y[fold.valid])
        part = part.assign(
            margin=margin,
            p=p,
            **baseline_predictions(
                X[fold.train], y[fold.train], X[fold.valid], categorical, HEALTH_EFFECT.get(target, -1)
            ),
        )
        fold_metrics[fold.index] = scores(part, capacity)
        parts.append(part)
    predictions = pd.concat(parts, ignore_index=True)
    return Backtest(target, folds, predictions, fold_metrics, scores(predictions, capacity), rounds)


def fold_model(X, y, fold: Fold, earlier: np.ndarray, later: np.ndarray, params: dict, max_rounds: int):
    """(raw margins, calibrated probabilities) on the fold's validation rows, and the rounds used."""
    stopped = model.fit_early_stopped(X[earlier], y[earlier], X[later], y[later], params, max_rounds)
    n_rounds = stopped.best_iteration or stopped.current_iteration()
    cal = calibration.platt(stopped.predict(X[later], raw_score=True, num_iteration=n_rounds), y[later])
    refit = model.fit(X[fold.train], y[fold.train], params, n_rounds)
    margin = refit.predict(X[fold.valid], raw_score=True)
    return margin, calibration.apply(cal, margin), n_rounds


def scores(part: pd.DataFrame, capacity: int | None) -> dict[str, dict[str, float]]:
    """Metrics of the model ("lightgbm") and each baseline present in a predictions frame.

    The model's entry also holds its lift over the plain gradient-boosting baseline
    (`lift_over_plain_gbm_roc_auc`, `..._pr_auc`: ours minus plain), when that baseline ran.
    """
    models = {"lightgbm": "p"} | {b: b for b in BASELINES if b in part}
    out = {
        name: evaluate(
            part["y"].to_numpy(), part[col].to_numpy(), part["arr"].to_numpy(), part["as_of"].to_numpy(), capacity
        )
        for name, col in models.items()
    }
    if "plain_gbm" in out:
        out["lightgbm"] |= {f"{LIFT}_{m}": out["lightgbm"][m] - out["plain_gbm"][m] for m in LIFT_METRICS}
    return out


def check_classes(y: np.ndarray, target: str, where: str) -> None:
    """Refuse to fit where the outcome never happens (or always does)."""
    if y.sum() == 0 or y.sum() == len(y):
        raise DataError(
            f"{target}: {where} has no {'positive' if y.sum() == 0 else 'negative'} label in its "
            f"{len(y)} training snapshot(s); the data needs more history or more {target} outcomes"
        )
