"""The one scoring path: feature rows in, risk, potential, reasons and tiers out.

The batch job calls `score_frame` and the service `score_columns` (the same scoring without the
tiers, which the service proposes against its book), so an account scores the same whichever
way it is asked about. Each model sees its own array through `ModelBundle.array`, the parity
check that refuses rows lacking a trained feature and restores the training categories.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd
from numpy.typing import ArrayLike

from features.build import MIN_HISTORY_DAYS
from features.bundle import ModelBundle, numbers
from features.personas import check_plays, persona_columns
from features.tables import DataError
from features.uplift import PeerUplift
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
    "pool",
    "segment",
    "persona",
    "play",
    "escalate",
    "onboarding_overflow",
    "insufficient_history",
    "lifecycle_stage",
    *REASONS,
    *GROWTH_REASONS,
    "adoption_gaps",
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
        previous: last run's scored output (`account_id`, `tier`, `churn_risk`, `reasons_json`, `persona`):
            tiers and personas keep their place unless clearly overtaken, and `changes` says what moved.
        reasons: word the SHAP drivers (the costly part); without them the reason columns are empty.
        on_rows: called with the number of rows done after each chunk (progress bars).

    Returns:
        One row per account with the `OUTPUT` columns.

    Raises:
        DataError: a needed column is missing (naming the model and version when it is a model
            feature), an account appears twice, or the policy or previous scores are unusable.
    """
    from serving.tiers import assign_tiers, load_policy

    policy = policy or load_policy()
    check_plays(policy.plays, models.churn.personas, policy.source)
    scored = pd.DataFrame(score_columns(features, models, previous, reasons, on_rows))
    return assign_tiers(scored, policy, previous)[OUTPUT]


def score_columns(
    features: Mapping[str, ArrayLike],
    models: Models,
    previous: Mapping[str, ArrayLike] | None = None,
    reasons: bool = True,
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Everything `score_frame` gives but the tiers, as arrays by column name.

    `features` and `previous` are DataFrames or arrays by column name. The service passes
    arrays and tiers posted rows against its book itself: answering one row from arrays saves
    the milliseconds that DataFrame operations cost per call.
    """
    columns = {name: np.asarray(values) for name, values in features.items()}
    check_features(columns)
    rows = len(columns["account_id"])
    chunks = []
    size = CHUNK if reasons else rows  # only explanations are slow enough to need progress
    for start in range(0, rows, size):
        chunk = {name: values[start : start + size] for name, values in columns.items()}
        chunks.append(scored_columns(chunk, models, reasons))
        if on_rows:
            on_rows(len(chunks[-1]["account_id"]))
    scored = {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
    scored |= persona_columns(models.churn.personas, columns, previous)  # last run's personas keep their place
    said = changes(scored, previous, models.churn) if previous is not None else [None] * rows
    scored["changes"] = np.asarray(said, dtype=object)
    return scored


def check_features(features: Mapping[str, np.ndarray]) -> None:
    """Refuse rows the output cannot be built from: missing key columns, none at all, repeated accounts."""
    missing = [c for c in NEEDED if c not in features]
    if missing:
        raise DataError(f"feature rows lack column(s) {', '.join(missing)}")
    ids = features["account_id"]
    if len(ids) == 0:
        raise DataError("no feature rows to score")
    if len(set(ids.tolist())) < len(ids):
        repeated = pd.Series(ids).duplicated().to_numpy()
        raise DataError(
            f"feature rows: account_id repeated, e.g. {ids[repeated][:3].tolist()}; score one as-of date at a time"
        )


def scored_columns(features: Mapping[str, np.ndarray], models: Models, reasons: bool) -> dict[str, np.ndarray]:
    """Risk, potential, value at stake and reasons for a chunk of rows (no tiers yet)."""
    churn_A = model_array(models.churn, models.churn_version, features)
    growth_A = churn_A if same_inputs(models.churn, models.growth) else None
    growth_A = growth_A if growth_A is not None else model_array(models.growth, models.growth_version, features)
    churn = model_scores(models.churn, churn_A, reasons, "risk", rs.TOP)
    growth = model_scores(models.growth, growth_A, reasons, "growth", TOP_GROWTH)
    rows = len(churn_A)
    arr = numbers(features["arr"])
    as_of = dates(features["as_of"])
    churn_text, growth_text = texts(churn.drivers, rs.TOP, rows), texts(growth.drivers, TOP_GROWTH, rows)
    explained = rs.reasons_json(churn=churn.drivers, growth=growth.drivers) if reasons else [None] * rows
    return {
        "account_id": features["account_id"].astype(str).astype(object),
        "as_of": as_of,
        "churn_risk": churn.probability,
        "growth_potential": growth.probability,
        "arr": arr,
        "renewal_date": renewal_dates(features, as_of),
        "days_to_renewal": numbers(features["days_to_renewal"]),
        "insufficient_history": insufficient_history(features),
        "lifecycle_stage": features["lifecycle_stage"].astype(str).astype(object),
        "arr_at_risk": churn.probability * arr,
        "expected_expansion": growth.probability * arr * expected_uplift(models.growth, features),
        **{name: churn_text[:, i] for i, name in enumerate(REASONS)},
        **{name: growth_text[:, i] for i, name in enumerate(GROWTH_REASONS)},
        "reasons_json": np.asarray(explained, dtype=object),
        "churn_model_version": np.full(rows, models.churn_version, dtype=object),
        "growth_model_version": np.full(rows, models.growth_version, dtype=object),
    }


def model_array(bundle: ModelBundle, version: str, features: Mapping[str, np.ndarray]) -> np.ndarray:
    """The bundle's parity-checked array; a refusal names the model and version it came from."""
    try:
        return bundle.array(features)
    except DataError as exc:
        raise DataError(
            f"{exc} (model {bundle.target} version {version}); build the features with that model's metric set"
        ) from exc


def same_inputs(a: ModelBundle, b: ModelBundle) -> bool:
    """True when two models read identical matrices, so one can be built for both."""
    return a.features == b.features and a.categories == b.categories


def model_scores(bundle: ModelBundle, A: np.ndarray, reasons: bool, unit: str, top: int) -> ModelScores:
    """Calibrated probabilities; with reasons, from the same SHAP pass that gives the drivers."""
    if not reasons:
        return ModelScores(bundle.calibrate(bundle.margin(A)), None)
    points, _, probability = bundle.contributions(A)
    return ModelScores(probability, rs.drivers(bundle, A, points, unit, top))


def texts(drivers: rs.Drivers | None, top: int, rows: int) -> np.ndarray:
    """The worded drivers as `top` columns (empty when reasons were not asked for)."""
    if drivers is None:
        return np.full((rows, top), None, dtype=object)
    out = np.full((rows, top), None, dtype=object)
    out[:, : drivers.text.shape[1]] = drivers.text
    return out


def dates(values: np.ndarray) -> np.ndarray:
    """A column as datetimes (dates as they are; text and date objects parsed; blanks NaT)."""
    return values if values.dtype.kind == "M" else pd.to_datetime(values).to_numpy()


def renewal_dates(features: Mapping[str, np.ndarray], as_of: np.ndarray) -> np.ndarray:
    """The renewal date given, else (row by row) as-of plus days to renewal."""
    seconds = np.round(numbers(features["days_to_renewal"]) * 86_400)
    derived = as_of + seconds.astype("timedelta64[s]")  # NaN days -> NaT
    if "renewal_date" not in features:
        return derived
    given = dates(features["renewal_date"]).astype(derived.dtype)
    return np.where(np.isnat(given), derived, given)


def insufficient_history(features: Mapping[str, np.ndarray]) -> np.ndarray:
    """The flag given, else (row by row) tenure shorter than the minimum history features need."""
    derived = numbers(features["tenure_days"]) < MIN_HISTORY_DAYS
    if "insufficient_history" not in features:
        return derived
    given = features["insufficient_history"]
    return np.where(pd.isna(given), derived, given).astype(bool)


def expected_uplift(growth: ModelBundle, features: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per row, the relative ARR increase the account's peers achieved when they grew (`features.uplift`).

    A growth model trained before peer groups existed carries only the book-wide mean: every row gets it.
    """
    peers = growth.info.get("uplift_peers")
    if peers is not None:
        return PeerUplift.from_dict(peers).uplift(features)
    uplift = growth.info.get("mean_uplift")
    if uplift is None:
        raise DataError("the growth model lacks info.uplift_peers, needed for expected expansion: retrain it")
    return np.full(len(features["account_id"]), float(uplift))


def changes(scored: Mapping[str, Sequence], previous: Mapping[str, ArrayLike], churn: ModelBundle) -> list[str | None]:
    """What changed since the last score: risk before and now, and the churn drivers that moved most.

    Driver points come from `reasons_json` (every family's points are kept there), so the drivers
    are named only when both runs had reasons; accounts new since then say so.
    """
    missing = [c for c in ("account_id", "churn_risk") if c not in previous]
    if missing:
        raise DataError(f"previous scores: missing column(s) {', '.join(missing)}")
    ids = np.asarray(previous["account_id"]).astype(str)
    then_json = previous["reasons_json"] if "reasons_json" in previous else [None] * len(ids)
    before = zip(numbers(previous["churn_risk"]).tolist(), then_json, strict=True)
    last = dict(zip(ids.tolist(), before, strict=True))  # the last row per account wins
    labels = rs.family_labels(churn)
    out = []
    now = zip(scored["account_id"], scored["churn_risk"], scored["reasons_json"], strict=True)
    for account, risk_now, now_json in now:
        risk_then, then_text = last.get(account, (math.nan, None))
        if math.isnan(risk_then):
            out.append("New since the last score")
            continue
        moved_risk = rs.signed_points(100 * (risk_now - risk_then))
        text = f"Risk {percent(risk_then)} \u2192 {percent(risk_now)} ({moved_risk} pts)"
        named = moved_drivers(family_points(now_json), family_points(then_text), labels)
        out.append(text + (": " + ", ".join(named) if named else ""))
    return out


def moved_drivers(now: dict[str, float], then: dict[str, float], labels: dict[str, str]) -> list[str]:
    """The `MOVES` churn families whose points moved most (at least `MIN_MOVE`), when both runs have points."""
    if not any(now.values()) or not any(then.values()):
        return []
    moved = sorted(((family, p - then.get(family, 0.0)) for family, p in now.items()), key=lambda m: -abs(m[1]))
    return [f"{labels.get(f, f)} {rs.signed_points(m)} pts" for f, m in moved[:MOVES] if abs(m) >= MIN_MOVE]


def family_points(reasons_json: str | None) -> dict[str, float]:
    """Every churn family's points from one `reasons_json` cell (empty where there is none).

    Raises:
        DataError: the cell is text but not the JSON `tierwise score` writes (a hand-edited previous file).
    """
    if not isinstance(reasons_json, str):
        return {}
    try:
        return {family: float(p) for family, p in orjson.loads(reasons_json)["churn_families"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"previous scores: reasons_json is not what tierwise score writes: {exc}") from exc


def percent(p: float) -> str:
    """A probability as a person reads it: 31%, or 0.4% for small ones."""
    return f"{p:.0%}" if p >= 0.1 else f"{p:.1%}"
