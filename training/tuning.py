"""`--tune N`: an optuna search over LightGBM parameters that never sees a backtest validation row.

Trials train and early-stop on snapshots whose outcome was known before the first fold's origin,
so the backtest that judges the tuned model stays out of time.
"""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd

from training import model
from training.backtest import late_slice


def tune(
    X: pd.DataFrame,
    y: np.ndarray,
    as_of: pd.Series,
    train: np.ndarray,
    gap_days: int,
    params: dict,
    n_trials: int,
    seed: int,
    max_rounds: int = model.MAX_ROUNDS,
) -> dict:
    """The best parameter overrides after `n_trials` trials (minimising late-slice log loss).

    `gap_days` is the label window (horizon plus churn grace) kept between the slices.
    """
    earlier, later = late_slice(as_of, train, gap_days)

    def objective(trial: optuna.Trial) -> float:
        trial_params = params | search_space(trial)
        booster = model.fit_early_stopped(X[earlier], y[earlier], X[later], y[later], trial_params, max_rounds)
        return float(booster.best_score["valid_0"]["binary_logloss"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(
        {k: params[k] for k in ("learning_rate", "num_leaves", "min_child_samples", "feature_fraction", "lambda_l2")}
    )
    study.optimize(objective, n_trials=n_trials)
    return study.best_params


def search_space(trial: optuna.Trial) -> dict:
    """Ranges that make sense for tabular account data of any size."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 127, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 300, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
    }
