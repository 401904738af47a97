"""Rolling-origin backtest: every fold trains only on snapshots whose outcome was known before it.

A fold has an origin date F and validates on the snapshots of the next few months from F. It
trains on snapshots with as_of + horizon <= F, i.e. whose label window had closed by F, so no
fold sees an account's future in its past. Inside the training window the latest months form
the slice that stops boosting and fits the fold's Platt calibration; the fold model is then
refitted on the whole window with that many rounds, exactly as the final model is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.tables import DataError
from training import calibration, model
from training.baselines import baseline_predictions
from training.evaluation import evaluate

HEALTH_DIRECTION = {"churn": -1, "growth": 1}  # how each outcome moves as an account gets healthier
N_FOLDS = 3
BLOCK_MONTHS = 3  # validation months per fold


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
    predictions: pd.DataFrame  # account_id, as_of, fold, y, arr, margin, p, health, logreg
    fold_metrics: dict[int, dict[str, dict[str, float]]]  # fold -> model -> metric -> value
    overall: dict[str, dict[str, float]]  # model -> metric -> value
    rounds: list[int] = field(default_factory=list)  # early-stopped rounds per fold

    @property
    def final_rounds(self) -> int:
        """Rounds for the final model: the median chosen across folds."""
        return int(np.median(self.rounds))


def rolling_folds(as_of: pd.Series, horizon_days: int, n_folds: int = N_FOLDS, block: int = BLOCK_MONTHS) -> list[Fold]:
    """Folds over the last snapshot dates, each validating on `block` dates after its origin.

    Raises:
        DataError: too few snapshot dates for the first fold to have any training rows.
    """
    dates = np.sort(as_of.unique())
    gap = pd.Timedelta(days=horizon_days)
    block = min(block, max(1, (len(dates) - 1) // (n_folds + 1)))
    origins = dates[len(dates) - n_folds * block :: block] if len(dates) > n_folds * block else []
    folds = []
    for i, origin in enumerate(origins):
        end = dates[min(len(dates) - 1, np.searchsorted(dates, origin) + block - 1)]
        train = (as_of + gap <= origin).to_numpy()
        valid = ((as_of >= origin) & (as_of <= end)).to_numpy()
        folds.append(Fold(i + 1, pd.Timestamp(origin), train, valid))
    if len(folds) < n_folds or not folds[0].train.any():
        raise DataError(
            f"too little history for a {n_folds}-fold rolling-origin backtest: {len(dates)} monthly snapshot(s) "
            f"with a {horizon_days}-day horizon; each fold needs snapshots whose outcome is known before it"
        )
    return folds


def late_slice(as_of: pd.Series, mask: np.ndarray, horizon_days: int, months: int = BLOCK_MONTHS):
    """(earlier, later) masks inside `mask`: the last `months` dates, and rows whose labels closed before them."""
    dates = np.sort(as_of[mask].unique())
    start = dates[max(1, len(dates) - months)] if len(dates) > 1 else dates[-1]
    later = mask & (as_of >= start).to_numpy()
    earlier = mask & (as_of + pd.Timedelta(days=horizon_days) <= start).to_numpy()
    if not earlier.any():  # a very short window: fall back to a plain time split without the gap
        earlier = mask & (as_of < start).to_numpy()
    return earlier, later


def run_backtest(
    frame: pd.DataFrame,
    X: pd.DataFrame,
    target: str,
    categorical: list[str],
    horizon_days: int,
    params: dict,
    max_rounds: int = model.MAX_ROUNDS,
    capacity: int | None = None,
    folds: list[Fold] | None = None,
    inner: Callable[[Fold], tuple[np.ndarray, np.ndarray]] | None = None,
) -> Backtest:
    """Fit and score the model and both baselines on every fold; metrics per fold and pooled.

    Args:
        folds: defaults to `rolling_folds`; table mode passes stratified folds.
        inner: (earlier, later) split of a fold's training rows for early stopping and calibration;
            defaults to the time-ordered `late_slice`.
    """
    y = frame[target].to_numpy(dtype=int)
    folds = folds or rolling_folds(frame["as_of"], horizon_days)
    inner = inner or (lambda fold: late_slice(frame["as_of"], fold.train, horizon_days))
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
                X[fold.train], y[fold.train], X[fold.valid], categorical, HEALTH_DIRECTION.get(target, -1)
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
    """Metrics of the model ("lightgbm") and each baseline present in a predictions frame."""
    models = {"lightgbm": "p"} | {b: b for b in ("health", "logreg") if b in part}
    return {
        name: evaluate(
            part["y"].to_numpy(), part[col].to_numpy(), part["arr"].to_numpy(), part["as_of"].to_numpy(), capacity
        )
        for name, col in models.items()
    }


def check_classes(y: np.ndarray, target: str, where: str) -> None:
    """Refuse to fit where the outcome never happens (or always does)."""
    if y.sum() == 0 or y.sum() == len(y):
        raise DataError(
            f"{target}: {where} has no {'positive' if y.sum() == 0 else 'negative'} label in its "
            f"{len(y)} training snapshot(s); the data needs more history or more {target} outcomes"
        )
