"""The model that ships, calibrated on data it did not train on, and its calibration measured later.

The shipped model is boosted on the snapshots whose label windows closed before the last labelled
period (the late slice of `training.backtest.late_slice`: the latest quarter of snapshot dates, with
a whole label window between it and the rows the trees learn from), stopped early on that period and
Platt-calibrated on it. So the calibration is fitted on the very model that ships, on rows whose
outcomes it never saw. Refitting on every row after calibrating would ship a different model (more
data and rounds move its margins) than the one the calibration was fitted on.

To say what a score means, the same recipe is reproduced on the rows whose outcomes were known
before the last backtest fold's origin and scored on that fold's validation rows, a later period the
reproduced model touched in no way (`holdout`): its ECE and Brier score are the shipped model's
measured calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from training import model
from training.backtest import Fold, check_classes, late_slice
from training.calibration import apply, platt
from training.evaluation import evaluate


@dataclass
class Shipped:
    """The model that ships, its calibration and the rows each part was fitted on."""

    booster: lgb.Booster  # exactly `rounds` trees
    calibration: dict[str, float]  # Platt {"a", "b"}, fitted on `calibration_rows` with this booster
    rounds: int
    fit_rows: np.ndarray  # bool: rows the trees learnt from (label window closed before the calibration period)
    calibration_rows: np.ndarray  # bool: the last labelled period (early stopping and Platt scaling)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities for a feature matrix."""
        return apply(self.calibration, self.booster.predict(X, raw_score=True))


def fit_shipped(
    X: pd.DataFrame, y: np.ndarray, as_of: pd.Series, rows: np.ndarray, gap_days: int, params: dict, max_rounds: int
) -> Shipped:
    """Boost on `rows` up to a label window before their last labelled period; stop and calibrate on that period.

    Args:
        rows: bool mask of the snapshots the recipe may use (all of them for the model that ships).
        gap_days: the label window (horizon plus churn grace) kept between the two parts.

    Raises:
        DataError: the rows the trees learn from have only one class.
    """
    fit_rows, calibration_rows = late_slice(as_of, rows, gap_days)
    check_classes(y[fit_rows], "model", "the rows before the calibration period")
    stopped = model.fit_early_stopped(
        X[fit_rows], y[fit_rows], X[calibration_rows], y[calibration_rows], params, max_rounds
    )
    rounds = stopped.best_iteration or stopped.current_iteration()
    booster = lgb.Booster(model_str=stopped.model_to_string(num_iteration=rounds))
    margin = booster.predict(X[calibration_rows], raw_score=True)
    return Shipped(booster, platt(margin, y[calibration_rows]), rounds, fit_rows, calibration_rows)


def holdout(
    X: pd.DataFrame,
    y: np.ndarray,
    frame: pd.DataFrame,
    fold: Fold,
    gap_days: int,
    params: dict,
    max_rounds: int,
) -> tuple[dict, pd.DataFrame]:
    """The shipped recipe reproduced on the rows known before `fold`'s origin and scored on its validation rows.

    Returns:
        (facts, predictions): ECE, Brier, ROC AUC, rows, positives, mean predicted and observed rate and
        the period of the untouched rows; predictions has `as_of`, `y`, `p` per untouched row.
    """
    shipped = fit_shipped(X, y, frame["as_of"], fold.train, gap_days, params, max_rounds)
    p, truth = shipped.predict(X[fold.valid]), y[fold.valid]
    as_of = frame.loc[fold.valid, "as_of"]
    scored = evaluate(truth, p, frame.loc[fold.valid, "arr"].to_numpy(), as_of.to_numpy())
    facts = {
        "ece": scored["ece"],
        "brier": scored["brier"],
        "roc_auc": scored["roc_auc"],
        "rows": int(len(truth)),
        "positives": int(truth.sum()),
        "mean_p": float(p.mean()),
        "observed_rate": float(truth.mean()),
        "first_as_of": str(as_of.min().date()),
        "last_as_of": str(as_of.max().date()),
        "recipe_fit_last_as_of": str(frame.loc[shipped.fit_rows, "as_of"].max().date()),
        "recipe_calibration_as_of": str(frame.loc[shipped.calibration_rows, "as_of"].min().date()),
    }
    return facts, pd.DataFrame({"as_of": as_of.to_numpy(), "y": truth, "p": p})


def measured_sentence(info: dict) -> str:
    """What a score means, in words, with the figures measured on the untouched period (empty without them)."""
    held = info.get("shipped_calibration")
    if not held:
        return ""
    return (
        f"Measured on {held['rows']:,} later snapshots it never touched ({held['first_as_of']} to "
        f"{held['last_as_of']}, the model refitted by the same recipe on the data before them): "
        f"expected calibration error {held['ece']:.3f} (a score is off by {100 * held['ece']:.1f} points on average), "
        f"Brier {held['brier']:.3f}; {held['mean_p']:.1%} predicted against {held['observed_rate']:.1%} observed."
    )
