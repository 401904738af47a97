"""The tier policy and the placement of accounts into capacity pools, shared by scoring and the backtest.

It lives in `features` for the reason `features.bundle` does: serving places accounts when it
scores a book, and training replays the same placement on its backtest to measure what the
policy would have covered; `features` is the one package both may import. Pure numpy on
arrays (`Standing`): no frames, no MLflow, so re-tiering a book for one posted row stays cheap.

Pools are the policy's capacities: `high_touch` and `mid_touch` (retention and expansion CSMs)
and `onboarding` (an onboarding team or pooled programme with human milestones). Every account
competes for high_touch by value at stake; onboarding accounts (before their first renewal) that
miss it take onboarding places by value at stake, so they never take the mid_touch places that
established accounts compete for. Onboarding accounts the onboarding pool cannot hold overflow:
they are tech_touch and flagged, never silently tech touch only.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import yaml
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.errors import DataError

# The shipped policy is a file a CS leader copies; it sits with the scoring it configures and is read here as data.
DEFAULT_POLICY = Path(__file__).parents[1] / "serving" / "tiers.yaml"
HIGH, MID, TECH = "high_touch", "mid_touch", "tech_touch"
TIERS = (HIGH, MID, TECH)
ONBOARDING = "onboarding"
POOLS = (HIGH, MID, ONBOARDING)  # the capacities a policy sizes; tech_touch takes everyone else
TOUCHED = (HIGH, MID)  # the human-touch tiers (an onboarding place is a mid_touch place of the onboarding pool)
SEGMENT_NAMES = ("save", "onboard", "grow", "nurture")  # the playbook segments, in the order their rules apply


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Staffing(_Strict):
    csms: Annotated[int, Field(ge=0)]
    accounts_per_csm: Annotated[int, Field(ge=0)]


class _Capacity(_Strict):
    high_touch: _Staffing
    mid_touch: _Staffing
    onboarding: _Staffing


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
    plays: dict[str, dict[Literal[SEGMENT_NAMES], Annotated[str, Field(min_length=1)]]] = {}  # persona: segment: play


@dataclass(frozen=True)
class TierPolicy:
    """A validated tier policy.

    Attributes:
        capacity: places per pool (CSMs x accounts per CSM) for `high_touch`, `mid_touch` and
            `onboarding`; `tech_touch` is unlimited and has no entry.
        per_csm: accounts one CSM of each pool holds: what one more or one fewer CSM changes.
        hysteresis_margin: relative margin by which a challenger's priority must beat the
            incumbent's at a pool boundary before the two swap.
        escalate_churn_risk: a tech_touch account at or above this risk is escalated.
        escalate_arr_at_risk: a tech_touch account at or above this ARR at risk is escalated.
        save_min_risk: churn risk from which an account is in the `save` segment.
        grow_min_potential: growth potential from which an account is in the `grow` segment.
        source: the file it was read from (recorded with training runs).
        plays: optional plays per adoption persona and segment (persona -> segment -> play); the
            personas are checked against the model's at scoring (`features.personas.check_plays`).
    """

    capacity: dict[str, int]
    per_csm: dict[str, int]
    hysteresis_margin: float
    escalate_churn_risk: float
    escalate_arr_at_risk: float
    save_min_risk: float
    grow_min_potential: float
    source: str = ""
    plays: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)

    def csms(self, pool: str) -> int:
        """CSMs staffing a pool (places / accounts per CSM; 0 when a CSM holds no accounts)."""
        return self.capacity[pool] // self.per_csm[pool] if self.per_csm[pool] else 0


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
    staffing = {pool: getattr(parsed.capacity, pool) for pool in POOLS}
    return TierPolicy(
        capacity={pool: s.csms * s.accounts_per_csm for pool, s in staffing.items()},
        per_csm={pool: s.accounts_per_csm for pool, s in staffing.items()},
        hysteresis_margin=parsed.hysteresis_margin,
        escalate_churn_risk=parsed.escalate.churn_risk,
        escalate_arr_at_risk=parsed.escalate.arr_at_risk,
        save_min_risk=parsed.segments.save_min_risk,
        grow_min_potential=parsed.segments.grow_min_potential,
        source=str(path),
        plays={persona: dict(by_segment) for persona, by_segment in parsed.plays.items()},
    )


def policy_problems(exc: ValidationError) -> str:
    """One line per problem, each naming the dotted key (`capacity.mid_touch.csms: ...`)."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            hint = f"; pools are {', '.join(POOLS)} ({TECH} takes no capacity)" if err["loc"][0] == "capacity" else ""
            problems.append(f"{key}: unknown key{hint}")
        elif err["type"] == "missing":
            hint = " (the onboarding team's csms and accounts_per_csm, see serving/tiers.yaml)"
            problems.append(f"{key}: missing key" + (hint if key == f"capacity.{ONBOARDING}" else ""))
        else:
            problems.append(f"{key}: {err['msg'].lower()}, got {err.get('input')!r}")
    return "; ".join(problems)


@dataclass(frozen=True)
class Standing:
    """What placement reads of each account, as arrays: id, value at stake, onboarding, current tier.

    The service builds one per score batch, so proposing a tier for a posted row re-ranks
    arrays instead of rebuilding the book's frame on every request; the backtest builds one
    per as-of date to replay the policy.
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
        """The standing of scored accounts (a frame or arrays) holding `tier` (None: no tier).

        Reads `account_id`, `arr_at_risk`, `expected_expansion` and `lifecycle_stage`.
        """
        return cls(
            ids=np.asarray(scored["account_id"]).astype(str).astype(object),
            priority=np.asarray(scored["arr_at_risk"], dtype=float) + np.asarray(scored["expected_expansion"], float),
            onboarding=np.asarray(scored["lifecycle_stage"]).astype(str) == ONBOARDING,
            tier=np.asarray(tier, dtype=object),
        )


def place(standing: Standing, policy: TierPolicy) -> np.ndarray:
    """The tier of every account: pools filled by value at stake, highest first, with sticky boundaries.

    1. high_touch: every account competes (a high-value onboarding account can win a place).
    2. onboarding: onboarding accounts not in high_touch take the onboarding pool's places (tier
       mid_touch: a named person with onboarding milestones); the rest overflow to tech_touch.
    3. mid_touch: established accounts not in high_touch.
    At each boundary last run's holders count `1 + hysteresis_margin` times their priority.
    """
    was_high = standing.tier == HIGH
    had_human = was_high | (standing.tier == MID)
    ids, margin = standing.ids, policy.hysteresis_margin
    everyone = np.ones(len(ids), dtype=bool)
    high = top_k(sticky(standing.priority, was_high, margin), ids, everyone, policy.capacity[HIGH])
    held = sticky(standing.priority, had_human, margin)
    onboard = top_k(held, ids, standing.onboarding & ~high, policy.capacity[ONBOARDING])
    mid = top_k(held, ids, ~standing.onboarding & ~high, policy.capacity[MID])
    return np.where(high, HIGH, np.where(onboard | mid, MID, TECH)).astype(object)


def plays_for(policy: TierPolicy, persona: ArrayLike | None, segment: np.ndarray) -> np.ndarray:
    """The policy's play for each account's persona and segment (None where the policy names none)."""
    persona = np.full(len(segment), None, dtype=object) if persona is None else np.asarray(persona, dtype=object)
    return np.array(
        [policy.plays.get(p, {}).get(s) for p, s in zip(persona.tolist(), segment.tolist(), strict=True)], dtype=object
    )


def pools(tier: np.ndarray, onboarding: np.ndarray) -> np.ndarray:
    """The pool each placed account's tier draws on: its tier, or `onboarding` for an onboarding account in mid_touch.

    Onboarding accounts never compete for mid_touch places (see `place`), so the two are the same.
    """
    tier = np.asarray(tier, dtype=object)
    return np.where((tier == MID) & np.asarray(onboarding, dtype=bool), ONBOARDING, tier).astype(object)


def overflow(tier: np.ndarray, onboarding: np.ndarray) -> np.ndarray:
    """Onboarding accounts left without a human place (the onboarding pool was full): flagged, never silent."""
    return (np.asarray(tier, dtype=object) == TECH) & np.asarray(onboarding, dtype=bool)


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


def covered(value: np.ndarray, touched: np.ndarray) -> float:
    """Share of a value (expected or realised) held by the touched accounts; NaN when there is none at all."""
    value = np.asarray(value, dtype=float)
    total = float(value.sum())
    return float(value[np.asarray(touched, dtype=bool)].sum()) / total if total > 0 else float("nan")
