"""Capacity-aware touch tiers and playbook segments, from a YAML policy a CS leader can read.

The team's capacity is the hard constraint: a tier never gets more accounts than its CSMs can
hold. Within it, accounts are ranked by value at stake (ARR at risk + expected expansion),
onboarding accounts are guaranteed a CSM, tech-touch accounts that look dangerous are flagged
for escalation, and last run's tiers are kept unless an account clearly crosses a boundary, so
CSM books do not churn on scoring noise. Everything is vectorised: 100,000 accounts take
milliseconds.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import yaml
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.tables import DataError

DEFAULT_POLICY = Path(__file__).with_name("tiers.yaml")
HIGH, MID, TECH = "high_touch", "mid_touch", "tech_touch"
TIERS = (HIGH, MID, TECH)
REQUIRED = (
    "account_id",
    "churn_risk",
    "growth_potential",
    "arr",
    "arr_at_risk",
    "expected_expansion",
    "lifecycle_stage",
    "insufficient_history",
    "days_to_renewal",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Staffing(_Strict):
    csms: Annotated[int, Field(ge=0)]
    accounts_per_csm: Annotated[int, Field(ge=0)]


class _Capacity(_Strict):
    high_touch: _Staffing
    mid_touch: _Staffing


class _Escalate(_Strict):
    churn_risk: Annotated[float, Field(ge=0, le=1)]
    arr_at_risk: Annotated[float, Field(ge=0)]


class _Segments(_Strict):
    save_min_risk: Annotated[float, Field(ge=0, le=1)]
    grow_min_potential: Annotated[float, Field(ge=0, le=1)]


class _PolicyFile(_Strict):
    """The YAML file's shape; `serving/tiers.yaml` documents every key."""

    capacity: _Capacity
    hysteresis_margin: Annotated[float, Field(ge=0, lt=1)]
    escalate: _Escalate
    segments: _Segments


@dataclass(frozen=True)
class TierPolicy:
    """A validated tier policy.

    Attributes:
        capacity: accounts per tier (CSMs x accounts per CSM) for `high_touch` and `mid_touch`;
            `tech_touch` is unlimited and has no entry.
        hysteresis_margin: relative margin by which a challenger's priority must beat the
            incumbent's at a tier boundary before the two swap.
        escalate_churn_risk: a tech_touch account at or above this risk is escalated.
        escalate_arr_at_risk: a tech_touch account at or above this ARR at risk is escalated.
        save_min_risk: churn risk from which an account is in the `save` segment.
        grow_min_potential: growth potential from which an account is in the `grow` segment.
    """

    capacity: dict[str, int]
    hysteresis_margin: float
    escalate_churn_risk: float
    escalate_arr_at_risk: float
    save_min_risk: float
    grow_min_potential: float


def load_policy(path: Path | str | None = None) -> TierPolicy:
    """Read and validate a tier policy (default: the shipped `serving/tiers.yaml`).

    Raises:
        DataError: the file is missing or not YAML, or a key is unknown, missing, of the wrong
            type or out of range; the message names the key.
    """
    path = Path(path) if path is not None else DEFAULT_POLICY
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DataError(f"tier policy {path}: cannot read it ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise DataError(f"tier policy {path}: not valid YAML: {exc}") from exc
    try:
        parsed = _PolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise DataError(f"tier policy {path}: {policy_problems(exc)}") from exc
    cap = parsed.capacity
    return TierPolicy(
        capacity={tier: s.csms * s.accounts_per_csm for tier, s in ((HIGH, cap.high_touch), (MID, cap.mid_touch))},
        hysteresis_margin=parsed.hysteresis_margin,
        escalate_churn_risk=parsed.escalate.churn_risk,
        escalate_arr_at_risk=parsed.escalate.arr_at_risk,
        save_min_risk=parsed.segments.save_min_risk,
        grow_min_potential=parsed.segments.grow_min_potential,
    )


def policy_problems(exc: ValidationError) -> str:
    """One line per problem, each naming the dotted key (`capacity.mid_touch.csms: ...`)."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            hint = f"; tiers are {', '.join(TIERS)} ({TECH} takes no capacity)" if err["loc"][0] == "capacity" else ""
            problems.append(f"{key}: unknown key{hint}")
        elif err["type"] == "missing":
            problems.append(f"{key}: missing key")
        else:
            problems.append(f"{key}: {err['msg'].lower()}, got {err.get('input')!r}")
    return "; ".join(problems)


@dataclass(frozen=True)
class Standing:
    """What tiering reads of each account, as arrays: id, value at stake, onboarding, current tier.

    The service builds one per score batch, so proposing a tier for a posted row re-ranks
    arrays instead of rebuilding the book's frame on every request.
    """

    ids: np.ndarray
    priority: np.ndarray
    onboarding: np.ndarray
    tier: np.ndarray  # the tier each account holds now (None where it has none)

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """Account id -> row."""
        return {account: i for i, account in enumerate(self.ids)}

    def subset(self, rows: np.ndarray | slice) -> Standing:
        """The standing of some of the accounts (a mask, positions or a slice)."""
        return Standing(self.ids[rows], self.priority[rows], self.onboarding[rows], self.tier[rows])

    def joined(self, other: Standing) -> Standing:
        """These accounts followed by the other's."""
        return Standing(*(np.concatenate([a, b]) for a, b in zip(self.arrays(), other.arrays(), strict=True)))

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The per-account arrays, in field order."""
        return self.ids, self.priority, self.onboarding, self.tier

    @classmethod
    def of(cls, scored: Mapping[str, ArrayLike], tier: np.ndarray) -> Standing:
        """The standing of scored accounts (`REQUIRED` columns, a frame or arrays) holding `tier` (None: no tier)."""
        return cls(
            ids=np.asarray(scored["account_id"]).astype(str).astype(object),
            priority=np.asarray(scored["arr_at_risk"], dtype=float) + np.asarray(scored["expected_expansion"], float),
            onboarding=np.asarray(scored["lifecycle_stage"]).astype(str) == "onboarding",
            tier=np.asarray(tier, dtype=object),
        )


def assign_tiers(scored: pd.DataFrame, policy: TierPolicy, previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add `tier`, `previous_tier`, `segment` and `escalate` to scored accounts.

    Tiers are filled by value at stake, highest first, never beyond capacity. Onboarding
    accounts always get a CSM: those not in high_touch take mid_touch places ahead of
    established accounts. With `previous` (last run's scores, `account_id` + `tier`), each
    boundary is sticky: a challenger displaces an incumbent only when its priority beats the
    incumbent's by more than `policy.hysteresis_margin`.

    Args:
        scored: one row per account with the columns in `REQUIRED`.
        policy: from `load_policy`.
        previous: last run's scored accounts; accounts absent from it have no previous tier.

    Raises:
        DataError: a required column is missing or empty, an account is duplicated, `previous`
            is malformed, or onboarding accounts outnumber the high_touch + mid_touch places.
    """
    check_scored(scored)
    standing = Standing.of(scored, previous_tier(scored["account_id"], previous))
    added = pd.DataFrame(labels(scored, place(standing, policy), standing.tier, policy), index=scored.index)
    added["previous_tier"] = added["previous_tier"].astype("string")
    return pd.concat([scored.drop(columns=added.columns, errors="ignore"), added], axis=1)


def place(standing: Standing, policy: TierPolicy) -> np.ndarray:
    """The tier of every account: capacity filled by value at stake, onboarding guaranteed a CSM, sticky boundaries."""
    was_high = standing.tier == HIGH
    had_csm = was_high | (standing.tier == MID)
    touch = touch_places(standing.priority, standing.ids, standing.onboarding, had_csm, policy)
    sticky_high = sticky(standing.priority, was_high, policy.hysteresis_margin)
    high = top_k(sticky_high, standing.ids, touch, policy.capacity[HIGH])
    return np.where(high, HIGH, np.where(touch, MID, TECH))


def labels(
    scored: Mapping[str, ArrayLike], tier: np.ndarray, previous: np.ndarray, policy: TierPolicy
) -> dict[str, np.ndarray]:
    """The `tier`, `previous_tier`, `segment` and `escalate` columns of scored accounts (a frame or arrays)."""
    risk = np.asarray(scored["churn_risk"], dtype=float)
    young = np.asarray(scored["insufficient_history"]).astype(bool)
    escalate = (tier == TECH) & (
        (risk >= policy.escalate_churn_risk)
        | (np.asarray(scored["arr_at_risk"], dtype=float) >= policy.escalate_arr_at_risk)
        | young
    )
    young |= np.asarray(scored["lifecycle_stage"]).astype(str) == "onboarding"
    potential = np.asarray(scored["growth_potential"], dtype=float)
    segment = np.select(  # the first matching rule wins
        [risk >= policy.save_min_risk, young, potential >= policy.grow_min_potential],
        ["save", "onboard", "grow"],
        default="nurture",
    )
    return {"tier": tier, "previous_tier": previous, "segment": segment.astype(object), "escalate": escalate}


def check_scored(scored: pd.DataFrame) -> None:
    """Refuse input the tiering would misread: missing columns, missing numbers, duplicated accounts."""
    missing = [c for c in REQUIRED if c not in scored.columns]
    if missing:
        raise DataError(f"scored accounts: missing column(s) {', '.join(missing)}")
    for col in ("churn_risk", "growth_potential", "arr", "arr_at_risk", "expected_expansion"):
        empty = scored[col].isna()
        if empty.any():
            example = scored.loc[empty, "account_id"].head(3).tolist()
            raise DataError(f"scored accounts: {col} is empty for {int(empty.sum())} account(s), e.g. {example}")
    dup = scored["account_id"].duplicated()
    if dup.any():
        raise DataError(f"scored accounts: account_id repeated, e.g. {scored.loc[dup, 'account_id'].head(3).tolist()}")


def previous_tier(account_ids: pd.Series, previous: pd.DataFrame | None) -> np.ndarray:
    """Last run's tier per account (None where the account is new or there was no last run)."""
    if previous is None:
        return np.full(len(account_ids), None, dtype=object)
    missing = [c for c in ("account_id", "tier") if c not in previous.columns]
    if missing:
        raise DataError(f"previous scores: missing column(s) {', '.join(missing)}")
    tiers = previous["tier"].astype("string")
    unknown = tiers.notna() & ~tiers.isin(TIERS)
    if unknown.any():
        raise DataError(f"previous scores: tier has unknown value(s) {sorted(set(tiers[unknown]))[:3]}")
    last = pd.Series(tiers.to_numpy(), index=previous["account_id"].astype(str)).groupby(level=0).last()
    return held_tiers(account_ids.astype(str).map(last))


def held_tiers(tiers: pd.Series) -> np.ndarray:
    """Tier names as `Standing` holds them: an object array, None where an account has no tier."""
    return tiers.astype(object).where(tiers.notna(), None).to_numpy(dtype=object)


def sticky(priority: np.ndarray, incumbent: np.ndarray, margin: float) -> np.ndarray:
    """Priority as seen at a boundary: incumbents count `margin` more, so only a clear overtake swaps them."""
    return np.where(incumbent, priority * (1.0 + margin), priority)


def top_k(score: np.ndarray, ids: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """Mask of the `k` highest-scoring eligible rows; ties at the cut go to the lowest account ids (reproducible).

    Linear time (a partition, not a sort), so re-tiering a large book for one posted row stays cheap.
    """
    mask = np.zeros(len(score), dtype=bool)
    candidates = np.flatnonzero(eligible)
    if k >= len(candidates):
        mask[candidates] = True
        return mask
    if k <= 0:
        return mask
    values = score[candidates]
    cut = np.partition(values, len(values) - k)[len(values) - k]  # the k-th highest score
    above = candidates[values > cut]
    tied = candidates[values == cut]
    mask[above] = True
    mask[tied[np.argsort(ids[tied], kind="stable")][: k - len(above)]] = True
    return mask


def touch_places(
    priority: np.ndarray, ids: np.ndarray, onboarding: np.ndarray, had_csm: np.ndarray, policy: TierPolicy
) -> np.ndarray:
    """Mask of accounts with a named CSM (high or mid touch): every onboarding account, then the best of the rest."""
    places = policy.capacity[HIGH] + policy.capacity[MID]
    left = places - int(onboarding.sum())
    if left < 0:
        raise DataError(
            f"tier policy: {int(onboarding.sum())} accounts are onboarding (never tech_touch) but "
            f"capacity.high_touch + capacity.mid_touch hold only {places}; add mid_touch CSMs or accounts_per_csm"
        )
    established = top_k(sticky(priority, had_csm, policy.hysteresis_margin), ids, ~onboarding, left)
    return onboarding | established
