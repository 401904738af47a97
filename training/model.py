"""The LightGBM recipe: sound defaults for any account-level churn or growth problem.

Defaults are the textbook ones (not tuned to the demo world): a modest learning rate, enough
leaves for interactions, a minimum leaf size that stops the trees from memorising small
accounts, feature and row subsampling, deterministic training on a fixed seed. Rounds are set
by early stopping on the latest slice of each training window; the final model uses the median
of those, so its size is chosen by the backtest.

Declared directions (`features.metrics.DIRECTIONS`: more logins is healthier, more days since the
last activity is not) become LightGBM monotone constraints for the targets in `MONOTONE`: the model
can then never learn that healthy behaviour raises churn risk, and its reasons cannot say so. The
targets were chosen by measuring what the constraints cost in backtest ROC AUC (docs/training.md,
"Declared directions and monotone constraints").
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.metrics import HEALTH_EFFECT

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
MONOTONE = {"churn": True, "growth": True}  # targets constrained to the declared directions (measured)


def params_for(seed: int, overrides: dict | None = None) -> dict:
    """The default parameters with a seed (and tuned values, if any) applied."""
    return PARAMS | {"seed": seed} | (overrides or {})


def monotone_params(features: list[str], directions: dict[str, int], target: str) -> dict:
    """LightGBM's `monotone_constraints` for a target's declared directions ({} when it has none or is not constrained).

    Churn falls as an account gets healthier and growth rises (`HEALTH_EFFECT`), so a feature where
    more is healthier is constrained decreasing for churn and increasing for growth.
    """
    if not MONOTONE.get(target, False):
        return {}
    constraints = [HEALTH_EFFECT[target] * directions.get(name, 0) for name in features]
    return {"monotone_constraints": constraints} if any(constraints) else {}


def typical_values(X: pd.DataFrame, directions: dict[str, int], recency: list[str]) -> dict[str, float]:
    """Per feature with a declared direction, the value that splits the training rows in half.

    A reason is judged against it: logins above it cannot honestly raise churn risk, nor below it
    lower risk. That is the median, except where the median value itself is shared by many rows
    (most accounts were active yesterday): the split then falls between it and the next value on
    the side holding more of its rows, so "active yesterday" reads as the healthy end it is, not as
    "typical". Days since the last event are missing when nothing happened within the look-back,
    the longest wait of all, so they count as infinite.
    """
    out = {}
    for name in X.columns:
        if directions.get(name, 0) and pd.api.types.is_numeric_dtype(X[name]):
            values = X[name].to_numpy(dtype=float)
            values = np.where(np.isnan(values), np.inf, values) if name in recency else values[~np.isnan(values)]
            if len(values):
                out[name] = middle(np.sort(values))
    return out


def middle(values: np.ndarray) -> float:
    """The median of sorted values, moved half a step off a value whose tied rows straddle the middle."""
    median = float(np.median(values))
    below, upto = np.searchsorted(values, median, "left"), np.searchsorted(values, median, "right")
    midrank = (below + upto) / 2 / len(values)  # where the median's rows sit, on average, from 0 to 1
    if midrank < 0.5 and upto < len(values):
        return (median + values[upto]) / 2
    if midrank > 0.5 and below > 0:
        return (values[below - 1] + median) / 2
    return median


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
