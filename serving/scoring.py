"""The one scoring path: feature rows in, risk, potential, reasons and tiers out.

The batch job and the service both call `score_frame`, so an account scores the same whichever
way it is asked about. Each model sees its own matrix through `ModelBundle.matrix`, the parity
check that refuses rows lacking a trained feature and restores the training categories.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.build import MIN_HISTORY_DAYS
from features.bundle import ModelBundle
from features.tables import DataError
from serving import reasons as rs
from serving.registry import Models

TOP_GROWTH = 3
REASONS = [f"reason_{i}" for i in range(1, rs.TOP + 1)]
GROWTH_REASONS = [f"growth_reason_{i}" for i in range(1, TOP_GROWTH + 1)]
OUTPUT = [
    "account_id",
    "as_of",
    "churn_risk",
    "growth_potential",
    "arr",
    "renewal_date",
    "days_to_renewal",
    "arr_at_risk",
    "expected_expansion",
    "tier",
    "previous_tier",
    "segment",
    "escalate",
    "insufficient_history",
    "lifecycle_stage",
    *REASONS,
    *GROWTH_REASONS,
    "reasons_json",
    "changes",
    "churn_model_version",
    "growth_model_version",
]
NEEDED = ("account_id", "as_of", "arr", "days_to_renewal", "lifecycle_stage")
CHUNK = 20_000  # rows explained per step: bounds memory (SHAP arrays) and paces the progress bar
MOVES = 3  # drivers named in `changes`
MIN_MOVE = 0.5  # percentage points a driver must move to be named


@dataclass
class ModelScores:
    """One model's output for a batch: calibrated probability and, when asked for, its drivers."""

    probability: np.ndarray
    drivers: rs.Drivers | None


def score_frame(
    features: pd.DataFrame,
    models: Models,
    policy=None,
    previous: pd.DataFrame | None = None,
    reasons: bool = True,
    on_rows: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Score feature rows (the `FeatureSet.frame` columns) and assign tiers over the whole set.

    Args:
        features: one row per account: `account_id, as_of`, the model features, and optionally
            `insufficient_history` and `renewal_date` (derived from tenure and days to renewal
            when absent).
        models: from `serving.registry.load_models`.
        policy: a `serving.tiers.TierPolicy`; the shipped default when None.
        previous: last run's scored output (`account_id`, `tier`, `churn_risk`, `reasons_json`):
            tiers keep their place unless clearly overtaken, and `changes` says what moved.
        reasons: word the SHAP drivers (the costly part); without them the reason columns are empty.
        on_rows: called with the number of rows done after each chunk (progress bars).

    Returns:
        One row per account with the `OUTPUT` columns.

    Raises:
        DataError: a needed column is missing (naming the model and version when it is a model
            feature), an account appears twice, or the policy or previous scores are unusable.
    """
    from serving.tiers import assign_tiers, load_policy

    check_features(features)
    chunks = []
    size = CHUNK if reasons else len(features)  # only explanations are slow enough to need progress
    for start in range(0, len(features), size):
        chunks.append(scored_rows(features.iloc[start : start + size], models, reasons))
        if on_rows:
            on_rows(len(chunks[-1]))
    scored = pd.concat(chunks, ignore_index=True)
    scored["changes"] = changes(scored, previous, models.churn) if previous is not None else None
    scored = assign_tiers(scored, policy or load_policy(), previous)
    return scored[OUTPUT]


def check_features(features: pd.DataFrame) -> None:
    """Refuse rows the output cannot be built from: none at all, missing key columns, repeated accounts."""
    if features.empty:
        raise DataError("no feature rows to score")
    missing = [c for c in NEEDED if c not in features.columns]
    if missing:
        raise DataError(f"feature rows lack column(s) {', '.join(missing)}")
    repeated = features["account_id"].duplicated()
    if repeated.any():
        raise DataError(
            f"feature rows: account_id repeated, e.g. {features.loc[repeated, 'account_id'].head(3).tolist()}; "
            "score one as-of date at a time"
        )


def scored_rows(features: pd.DataFrame, models: Models, reasons: bool) -> pd.DataFrame:
    """Risk, potential, value at stake and reasons for a chunk of rows (no tiers yet)."""
    churn_X = model_matrix(models.churn, models.churn_version, features)
    growth_X = churn_X if same_inputs(models.churn, models.growth) else None
    growth_X = growth_X if growth_X is not None else model_matrix(models.growth, models.growth_version, features)
    churn = model_scores(models.churn, churn_X, reasons, "risk", rs.TOP)
    growth = model_scores(models.growth, growth_X, reasons, "growth", TOP_GROWTH)
    out = pd.DataFrame(
        {
            "account_id": features["account_id"].astype(str).to_numpy(),
            "as_of": pd.to_datetime(features["as_of"]).to_numpy(),
            "churn_risk": churn.probability,
            "growth_potential": growth.probability,
            "arr": features["arr"].astype(float).to_numpy(),
            "renewal_date": renewal_dates(features),
            "days_to_renewal": features["days_to_renewal"].astype(float).to_numpy(),
            "insufficient_history": insufficient_history(features),
            "lifecycle_stage": features["lifecycle_stage"].astype(str).to_numpy(),
        }
    )
    out["arr_at_risk"] = out["churn_risk"] * out["arr"]
    out["expected_expansion"] = out["growth_potential"] * out["arr"] * mean_uplift(models.growth)
    out[REASONS] = texts(churn.drivers, rs.TOP, len(out))
    out[GROWTH_REASONS] = texts(growth.drivers, TOP_GROWTH, len(out))
    out["reasons_json"] = rs.reasons_json(churn=churn.drivers, growth=growth.drivers) if reasons else None
    out["churn_model_version"] = models.churn_version
    out["growth_model_version"] = models.growth_version
    return out


def model_matrix(bundle: ModelBundle, version: str, features: pd.DataFrame) -> pd.DataFrame:
    """The bundle's parity-checked matrix; a refusal names the model and version it came from."""
    try:
        return bundle.matrix(features)
    except DataError as exc:
        raise DataError(
            f"{exc} (model {bundle.target} version {version}); build the features with that model's metric set"
        ) from exc


def same_inputs(a: ModelBundle, b: ModelBundle) -> bool:
    """True when two models read identical matrices, so one can be built for both."""
    return a.features == b.features and a.categories == b.categories


def model_scores(bundle: ModelBundle, X: pd.DataFrame, reasons: bool, unit: str, top: int) -> ModelScores:
    """Calibrated probabilities; with reasons, from the same SHAP pass that gives the drivers."""
    if not reasons:
        return ModelScores(bundle.calibrate(bundle.margin(X)), None)
    points, _, probability = bundle.contributions(X)
    return ModelScores(probability, rs.drivers(bundle, X, points, unit, top))


def texts(drivers: rs.Drivers | None, top: int, rows: int) -> np.ndarray:
    """The worded drivers as `top` columns (empty when reasons were not asked for)."""
    if drivers is None:
        return np.full((rows, top), None, dtype=object)
    out = np.full((rows, top), None, dtype=object)
    out[:, : drivers.text.shape[1]] = drivers.text
    return out


def renewal_dates(features: pd.DataFrame) -> np.ndarray:
    """The renewal date given, else as-of plus days to renewal."""
    if "renewal_date" in features.columns:
        return pd.to_datetime(features["renewal_date"]).to_numpy()
    days = pd.to_timedelta(features["days_to_renewal"].astype(float), unit="D")
    return (pd.to_datetime(features["as_of"]) + days).to_numpy()


def insufficient_history(features: pd.DataFrame) -> np.ndarray:
    """The flag given, else tenure shorter than the minimum history features need."""
    if "insufficient_history" in features.columns:
        return features["insufficient_history"].astype(bool).to_numpy()
    return (features["tenure_days"].astype(float) < MIN_HISTORY_DAYS).to_numpy()


def mean_uplift(growth: ModelBundle) -> float:
    """Mean relative ARR increase of growing accounts, logged with the growth model."""
    uplift = growth.info.get("mean_uplift")
    if uplift is None:
        raise DataError("the growth model lacks info.mean_uplift, needed for expected expansion: retrain it")
    return float(uplift)


def changes(scored: pd.DataFrame, previous: pd.DataFrame, churn: ModelBundle) -> list[str | None]:
    """What changed since the last score: risk before and now, and the churn drivers that moved most.

    Driver points come from `reasons_json` (every family's points are kept there), so the drivers
    are named only when both runs had reasons; accounts new since then say so.
    """
    missing = [c for c in ("account_id", "churn_risk") if c not in previous.columns]
    if missing:
        raise DataError(f"previous scores: missing column(s) {', '.join(missing)}")
    last = previous.assign(account_id=previous["account_id"].astype(str)).drop_duplicates("account_id", keep="last")
    last = last.set_index("account_id").reindex(scored["account_id"])
    before = last["churn_risk"].astype(float).to_numpy()
    now_points = family_points(scored["reasons_json"])
    then_points = family_points(last.get("reasons_json"), len(last))
    then_points = then_points.reindex(columns=now_points.columns).fillna(0.0)
    moved = now_points.to_numpy() - then_points.to_numpy()
    labels = rs.family_labels(churn)
    names = np.asarray([labels.get(f, f) for f in now_points.columns], dtype=object)
    order = np.argsort(-np.abs(moved), axis=1)[:, :MOVES]
    has_points = (then_points.abs().sum(axis=1).to_numpy() > 0) & (now_points.abs().sum(axis=1).to_numpy() > 0)
    out = []
    for i, (risk_then, risk_now) in enumerate(zip(before, scored["churn_risk"], strict=True)):
        if np.isnan(risk_then):
            out.append("New since the last score")
            continue
        moved_risk = rs.signed_points(100 * (risk_now - risk_then))
        text = f"Risk {percent(risk_then)} \u2192 {percent(risk_now)} ({moved_risk} pts)"
        named = [f"{names[j]} {rs.signed_points(moved[i, j])} pts" for j in order[i] if abs(moved[i, j]) >= MIN_MOVE]
        out.append(text + (": " + ", ".join(named) if has_points[i] and named else ""))
    return out


def family_points(reasons_json: pd.Series | None, rows: int | None = None) -> pd.DataFrame:
    """Every churn family's points per row from `reasons_json` (zeros where there is none).

    Raises:
        DataError: a cell is text but not the JSON `tierwise score` writes (a hand-edited previous file).
    """
    if reasons_json is None:
        return pd.DataFrame(index=range(rows or 0))
    parsed = []
    for text in reasons_json:
        try:
            parsed.append(json.loads(text)["churn_families"] if isinstance(text, str) else {})
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"previous scores: reasons_json is not what tierwise score writes: {exc}") from exc
    return pd.DataFrame(parsed, index=range(len(parsed))).fillna(0.0)


def percent(p: float) -> str:
    """A probability as a person reads it: 31%, or 0.4% for small ones."""
    return f"{p:.0%}" if p >= 0.1 else f"{p:.1%}"
