"""The three baselines every model must beat, fitted on exactly the same folds as the model.

1. A rule-based health score of the kind CS platforms ship: a fixed weighted sum of z-scored
   signals (usage trend, logins trend, active users, seat utilisation, support tickets, NPS,
   days since last activity), turned into a probability by a 1-D logistic fit on the training
   fold whose slope is held to the rule's direction (lower health, more churn; higher health,
   more growth). Weights and direction are fixed, never learnt: that is what makes it a rule.
2. A plain logistic regression on every feature (median-imputed, standardised; categories
   one-hot encoded).
3. A plain gradient-boosting model (scikit-learn's HistGradientBoosting, default settings) on the
   obvious features an analyst would start from: ARR, seats, tenure, days to renewal and event
   counts over 30 and 90 days. It is what a data scientist gets in an afternoon; our feature
   engineering and tuning must earn their keep against it, not only against a rule and a line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.bundle import sigmoid

# signal -> weight in the health score (positive = healthier). Signals absent from the data are skipped.
HEALTH_WEIGHTS = {
    "activity__users_trend_30d": 1.0,  # usage trend: active users, last 30 days vs the 30 before
    "login__trend_30d": 1.0,  # logins trend
    "activity__users_30d": 1.0,  # active users
    "seat_utilisation": 1.5,  # seat utilisation
    "support_ticket__count_30d": -1.0,  # support tickets
    "nps_mean_180d": 1.0,  # NPS
    "activity__days_since_last": -1.5,  # days since last activity
}

PLAIN_FEATURES = ("arr", "seats", "tenure_days", "days_to_renewal")  # the plain baseline's obvious columns
PLAIN_COUNTS = ("__count_30d", "__count_90d")  # plus every event type's count over 30 and 90 days
PLAIN_SEED = 0  # HistGradientBoosting's early-stopping split is random: fixed, so runs repeat


class HealthScore:
    """Fixed-weight health score, z-scored with training-fold statistics, mapped to a probability.

    Args:
        direction: -1 when the outcome is bad news (churn: risk falls as health rises), +1 when
            it is good news (growth).
    """

    def __init__(self, direction: int = -1):
        self.direction = direction

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> HealthScore:
        self.signals = [s for s in HEALTH_WEIGHTS if s in X.columns]
        if not self.signals:
            raise ValueError("none of the health score signals is present")
        values = X[self.signals].astype(float)
        self.mean, self.std = values.mean(), values.std().replace(0, 1).fillna(1)
        self.slope, self.intercept = monotone_logistic(self.direction * self.score(X), np.asarray(y, dtype=float))
        return self

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """The health score itself: sum of weight * z-score (a missing signal counts as average)."""
        z = ((X[self.signals].astype(float) - self.mean) / self.std).fillna(0.0).clip(-5, 5)
        return z.to_numpy() @ np.array([HEALTH_WEIGHTS[s] for s in self.signals])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return sigmoid(self.slope * self.direction * self.score(X) + self.intercept)


def monotone_logistic(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of a 1-D logistic fit with the slope held positive (ranking stays the rule's)."""

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        p = sigmoid(w[0] * x + w[1])
        eps = 1e-12
        grad = p - y
        value = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
        return value, np.array([np.mean(grad * x), np.mean(grad)])

    rate = np.clip(y.mean(), 1e-4, 1 - 1e-4)
    fit = minimize(
        loss, [1e-3, np.log(rate / (1 - rate))], jac=True, method="L-BFGS-B", bounds=[(1e-6, None), (None, None)]
    )
    return float(fit.x[0]), float(fit.x[1])


def logistic_regression(categorical: list[str], numeric: list[str]):
    """An sklearn pipeline: impute and standardise numbers, one-hot categories, L2 logistic regression."""
    columns = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()),
                numeric,
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=20, sparse_output=False), categorical),
        ]
    )
    return make_pipeline(columns, LogisticRegression(max_iter=2000, C=1.0))


def baseline_predictions(
    X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame, categorical: list[str], direction: int = -1
) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities of each baseline, fitted on (X, y) and applied to X_val.

    Args:
        direction: how the outcome moves with health (-1 churn, +1 growth), see `HealthScore`.
    """
    numeric = [c for c in X.columns if c not in categorical]
    out = {}
    if any(s in X.columns for s in HEALTH_WEIGHTS):
        out["health"] = HealthScore(direction).fit(X, y).predict_proba(X_val)
    cats = [c for c in categorical if c in X.columns]
    logreg = logistic_regression(cats, numeric).fit(plain(X, cats), y)
    out["logreg"] = logreg.predict_proba(plain(X_val, cats))[:, 1]
    obvious = plain_features(X.columns)
    if obvious:
        gbm = HistGradientBoostingClassifier(random_state=PLAIN_SEED).fit(as_floats(X[obvious]), y)
        out["plain_gbm"] = gbm.predict_proba(as_floats(X_val[obvious]))[:, 1]
    return out


def plain_features(columns) -> list[str]:
    """The plain baseline's columns among `columns`: `PLAIN_FEATURES` and the `<event>__count_30d/90d` ones.

    Picked by name, so they follow any event vocabulary; a flat table (table mode) gets whichever
    of them it has, and no plain baseline when it has none.
    """
    return [c for c in columns if c in PLAIN_FEATURES or str(c).endswith(PLAIN_COUNTS)]


def as_floats(X: pd.DataFrame) -> np.ndarray:
    """Numbers as a float array, missing as NaN (HistGradientBoosting handles missing values itself)."""
    return X.to_numpy(dtype=float, na_value=np.nan)


def plain(X: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categories as plain strings (missing as a level of its own) for sklearn's encoder."""
    X = X.copy()
    for col in categorical:
        X[col] = X[col].astype(object).where(X[col].notna(), "missing").astype(str)
    return X
