"""The LightGBM recipe: sound defaults for any account-level churn or growth problem.

Defaults are the textbook ones (not tuned to the demo world): a modest learning rate, enough
leaves for interactions, a minimum leaf size that stops the trees from memorising small
accounts, feature and row subsampling, deterministic training on a fixed seed. Rounds are set
by early stopping on the latest slice of each training window; the final model uses the median
of those, so its size is chosen by the backtest.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 10.0,
    "max_cat_to_onehot": 8,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbosity": -1,
}
MAX_ROUNDS = 1000
EARLY_STOPPING = 50


def params_for(seed: int, overrides: dict | None = None) -> dict:
    """The default parameters with a seed (and tuned values, if any) applied."""
    return PARAMS | {"seed": seed} | (overrides or {})


def fit(X: pd.DataFrame, y: np.ndarray, params: dict, rounds: int) -> lgb.Booster:
    """A booster with a fixed number of rounds (the final model)."""
    return lgb.train(params, lgb.Dataset(X, label=y, free_raw_data=True), num_boost_round=max(1, rounds))


def fit_early_stopped(
    X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame, y_val: np.ndarray, params: dict, max_rounds: int = MAX_ROUNDS
) -> lgb.Booster:
    """A booster stopped when the log loss on a later validation slice stops improving."""
    train = lgb.Dataset(X, label=y)
    valid = lgb.Dataset(X_val, label=y_val, reference=train)
    return lgb.train(
        params | {"metric": "binary_logloss"},
        train,
        num_boost_round=max_rounds,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)],
    )
