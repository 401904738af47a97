"""Capacity-aware touch tiers and playbook segments for a scored book, from a YAML policy a CS leader can read.

The team's capacity is the hard constraint: a pool never gets more accounts than its CSMs can
hold. The policy and the placement itself (`TierPolicy`, `load_policy`, `Standing`, `place`)
live in `features.policy`, because training replays them on its backtest; this module applies
them to a scored frame: last run's tiers for hysteresis, the playbook segment, escalation of
tech-touch accounts that look dangerous, the onboarding overflow, and what the allocation is
expected to cover (and what one CSM more or fewer would change). Everything is vectorised:
100,000 accounts take milliseconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from features.errors import DataError
from features.policy import (
    DEFAULT_POLICY,
    HIGH,
    MID,
    ONBOARDING,
    POOLS,
    TECH,
    TIERS,
    TOUCHED,
    Standing,
    TierPolicy,
    covered,
    load_policy,
    overflow,
    place,
    plays_for,
    pools,
)

__all__ = [  # the policy's names stay importable from here, where scoring and the service have always found them
    "DEFAULT_POLICY",
    "HIGH",
    "MID",
    "ONBOARDING",
    "POOLS",
    "TECH",
    "TIERS",
    "Allocation",
    "Standing",
    "TierPolicy",
    "allocation",
    "assign_tiers",
    "check_scored",
    "held_tiers",
    "labels",
    "load_policy",
    "place",
    "previous_tier",
]
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


def assign_tiers(scored: pd.DataFrame, policy: TierPolicy, previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add `tier`, `previous_tier`, `pool`, `segment`, `play`, `escalate` and `onboarding_overflow` to scored accounts.

    Pools are filled by value at stake, highest first, never beyond capacity (`features.policy.place`):
    high_touch from every account, the onboarding pool from onboarding accounts, mid_touch from
    established ones. Onboarding accounts the onboarding pool cannot hold are tech_touch with
    `onboarding_overflow` and `escalate` set: the run goes on and `allocation` says what is missing.
    With `previous` (last run's scores, `account_id` + `tier`), each boundary is sticky: a
    challenger displaces an incumbent only when its priority beats the incumbent's by more than
    `policy.hysteresis_margin`.

    Args:
        scored: one row per account with the columns in `REQUIRED`.
        policy: from `load_policy`.
        previous: last run's scored accounts; accounts absent from it have no previous tier.

    Raises:
        DataError: a required column is missing or empty, an account is duplicated, or `previous`
            is malformed.
    """
    check_scored(scored)
    standing = Standing.of(scored, previous_tier(scored["account_id"], previous))
    added = pd.DataFrame(labels(scored, place(standing, policy), standing.tier, policy), index=scored.index)
    added["previous_tier"] = added["previous_tier"].astype("string")
    return pd.concat([scored.drop(columns=added.columns, errors="ignore"), added], axis=1)


def labels(
    scored: Mapping[str, ArrayLike], tier: np.ndarray, previous: np.ndarray, policy: TierPolicy
) -> dict[str, np.ndarray]:
    """The tier columns of scored accounts (a frame or arrays): tier, previous tier, pool, segment, flags."""
    risk = np.asarray(scored["churn_risk"], dtype=float)
    onboarding = np.asarray(scored["lifecycle_stage"]).astype(str) == ONBOARDING
    young = np.asarray(scored["insufficient_history"]).astype(bool)
    overflowed = overflow(tier, onboarding)
    escalate = (tier == TECH) & (
        (risk >= policy.escalate_churn_risk)
        | (np.asarray(scored["arr_at_risk"], dtype=float) >= policy.escalate_arr_at_risk)
        | young
        | overflowed
    )
    potential = np.asarray(scored["growth_potential"], dtype=float)
    segment = np.select(  # the first matching rule wins
        [risk >= policy.save_min_risk, young | onboarding, potential >= policy.grow_min_potential],
        ["save", "onboard", "grow"],
        default="nurture",
    )
    return {
        "tier": tier,
        "previous_tier": previous,
        "pool": pools(tier, onboarding),
        "segment": segment.astype(object),
        "play": plays_for(policy, scored.get("persona"), segment),
        "escalate": escalate,
        "onboarding_overflow": overflowed,
    }


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


@dataclass(frozen=True)
class Allocation:
    """What a tiered book's human-touch places are expected to cover, and what staffing changes would do.

    Attributes:
        coverage: expected loss (ARR at risk) plus expected expansion in the human-touch tiers,
            over the book's total.
        overflow_accounts: onboarding accounts the onboarding pool could not hold (missing places).
        overflow_value: their value at stake, left without a human.
        staffing: per pool: CSMs, accounts per CSM, and the expected coverage with one CSM fewer,
            as now, and with one more (the other pools unchanged; NaN where there is no CSM to remove).
    """

    coverage: float
    overflow_accounts: int
    overflow_value: float
    staffing: pd.DataFrame

    def lines(self) -> list[str]:
        """The allocation in a few lines a CS leader reads (the `tierwise score` summary)."""
        out = [f"human-touch tiers hold {self.coverage:.1%} of the expected loss and expansion"]
        if self.overflow_accounts:
            out.append(
                f"onboarding overflow: {self.overflow_accounts:,} onboarding account(s) without a place "
                f"(value at stake {self.overflow_value:,.0f}); add onboarding capacity or escalate them"
            )
        for row in self.staffing.itertuples(index=False):
            fewer = "n/a" if np.isnan(row.one_fewer) else f"{row.one_fewer:.1%}"
            out.append(
                f"  {row.pool}: {row.csms} CSM(s) x {row.accounts_per_csm}: one fewer {fewer}, "
                f"now {row.now:.1%}, one more {row.one_more:.1%}"
            )
        return out


def allocation(scored: pd.DataFrame, policy: TierPolicy) -> Allocation:
    """The allocation of a tiered book (`assign_tiers` output; its `previous_tier` keeps hysteresis in the what-ifs)."""
    standing = Standing.of(scored, held_tiers(scored["previous_tier"].astype("string")))
    tier = np.asarray(scored["tier"], dtype=object)
    flagged = np.asarray(scored["onboarding_overflow"], dtype=bool)
    rows = []
    for pool in POOLS:
        row = {"pool": pool, "csms": policy.csms(pool), "accounts_per_csm": policy.per_csm[pool]}
        for name, step in (("one_fewer", -1), ("now", 0), ("one_more", 1)):
            places = policy.capacity[pool] + step * policy.per_csm[pool]
            if places < 0:
                row[name] = np.nan
                continue
            staffed = dataclasses.replace(policy, capacity=policy.capacity | {pool: places})
            row[name] = covered(standing.priority, np.isin(place(standing, staffed), TOUCHED))
        rows.append(row)
    return Allocation(
        coverage=covered(standing.priority, np.isin(tier, TOUCHED)),
        overflow_accounts=int(flagged.sum()),
        overflow_value=float(standing.priority[flagged].sum()),
        staffing=pd.DataFrame(rows),
    )
