"""Platt scaling: the stated method that turns LightGBM margins into honest probabilities.

Fitted only on predictions a model made for snapshots it was not trained on: the backtest's fold
models on their late slices, the model that ships on the last labelled period (`training.shipped`).
Platt, not isotonic regression: two parameters fitted on a quarter of snapshots (a few dozen
positives in a small book) cannot overfit the way an isotonic step function does, and a monotone
map of the margin keeps the booster's ranking and SHAP drivers (measured: docs/training.md,
*Calibration of the model that ships*). Class imbalance is left to this step rather than to sample
weights, which would distort the probabilities.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from features.bundle import sigmoid


def platt(margin: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """`{"a", "b"}` with p = sigmoid(a * margin + b), a near-unpenalised 1-D logistic fit."""
    y = np.asarray(y, dtype=int)
    if y.min() == y.max():  # one class only: keep the ranking, pin the level to the observed rate
        rate = np.clip(y.mean(), 1e-4, 1 - 1e-4)
        return {"a": 1.0, "b": float(np.log(rate / (1 - rate)) - np.mean(margin))}
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(margin, dtype=float).reshape(-1, 1), y)
    return {"a": float(fit.coef_[0, 0]), "b": float(fit.intercept_[0])}


def apply(calibration: dict[str, float], margin: np.ndarray) -> np.ndarray:
    """Calibrated probabilities for raw margins (the same formula the bundle applies at scoring)."""
    return sigmoid(calibration["a"] * np.asarray(margin, dtype=float) + calibration["b"])
