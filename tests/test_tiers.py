"""Tier policy: capacity, onboarding, priority order, hysteresis, escalation, segments, bad policy files.

Scored books are generated with numpy: the policy needs no model, only the scored columns.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from features.tables import DataError
from serving.tiers import DEFAULT_POLICY, TIERS, assign_tiers, load_policy


def scored_book(n: int, seed: int, onboarding_share: float = 0.1) -> pd.DataFrame:
    """A synthetic scored book: skewed ARR, mostly low risk, some onboarding and young accounts."""
    rng = np.random.default_rng(seed)
    arr = rng.lognormal(9.0, 1.2, n)
    risk = rng.beta(1.5, 8.0, n)
    growth = rng.beta(1.5, 6.0, n)
    return with_values(
        pd.DataFrame(
            {
                "account_id": [f"acct-{seed}-{i:05d}" for i in range(n)],
                "churn_risk": risk,
                "growth_potential": growth,
                "arr": arr,
                "lifecycle_stage": np.where(rng.random(n) < onboarding_share, "onboarding", "established"),
                "insufficient_history": rng.random(n) < 0.03,
                "days_to_renewal": rng.integers(0, 365, n).astype(float),
            }
        )
    )


def with_values(book: pd.DataFrame, uplift: float = 0.2) -> pd.DataFrame:
    """Recompute ARR at risk and expected expansion after risk, growth or ARR changed."""
    return book.assign(
        arr_at_risk=book["churn_risk"] * book["arr"],
        expected_expansion=book["growth_potential"] * book["arr"] * uplift,
    )


def policy_with(high: int, mid: int, margin: float | None = None):
    policy = load_policy()
    changes = {"capacity": {"high_touch": high, "mid_touch": mid}}
    if margin is not None:
        changes["hysteresis_margin"] = margin
    return dataclasses.replace(policy, **changes)


def priority(frame: pd.DataFrame) -> pd.Series:
    return frame["arr_at_risk"] + frame["expected_expansion"]


def flips(before: pd.DataFrame, after: pd.DataFrame) -> int:
    return int((before.set_index("account_id")["tier"] != after.set_index("account_id")["tier"]).sum())


def test_shipped_policy_loads_with_capacity_from_csms_times_accounts():
    policy = load_policy()
    raw = yaml.safe_load(DEFAULT_POLICY.read_text())
    for tier in ("high_touch", "mid_touch"):
        staffing = raw["capacity"][tier]
        assert policy.capacity[tier] == staffing["csms"] * staffing["accounts_per_csm"] > 0
    assert "tech_touch" not in policy.capacity


@pytest.mark.parametrize("seed", range(6))
def test_capacities_never_exceeded(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(50, 3000))
    book = scored_book(n, seed, onboarding_share=float(rng.uniform(0, 0.2)))
    onboarding = int((book["lifecycle_stage"] == "onboarding").sum())
    high = int(rng.integers(0, n // 3 + 1))
    mid = int(rng.integers(onboarding, onboarding + n // 2 + 1))
    policy = policy_with(high, mid, margin=float(rng.uniform(0, 0.5)))
    first = assign_tiers(book, policy)
    perturbed = with_values(book.assign(churn_risk=book["churn_risk"] * rng.uniform(0.5, 1.5, n)))
    second = assign_tiers(perturbed, policy, previous=first)  # hysteresis must not break capacity either
    for out in (first, second):
        counts = out["tier"].value_counts()
        assert counts.get("high_touch", 0) <= high
        assert counts.get("mid_touch", 0) <= mid
        assert counts.sum() == n and set(counts.index) <= set(TIERS)
        # capacity is used, not left idle, while there are accounts to fill it
        assert counts.get("high_touch", 0) + counts.get("mid_touch", 0) == min(n, high + mid)


def test_onboarding_accounts_are_never_tech_touch_even_when_mid_touch_is_tight():
    book = scored_book(2000, 1, onboarding_share=0.15)
    onboarding = book["lifecycle_stage"] == "onboarding"
    # mid_touch holds exactly the onboarding accounts: they take every place, ahead of established ones
    policy = policy_with(50, int(onboarding.sum()))
    out = assign_tiers(book, policy)
    assert not (out.loc[onboarding, "tier"] == "tech_touch").any()
    assert (out["tier"] == "mid_touch").sum() <= policy.capacity["mid_touch"]
    # the established accounts with the highest priority still got their high_touch places
    established = out[~onboarding]
    assert established.nlargest(10, "arr_at_risk").index.isin(out.index[out["tier"] != "tech_touch"]).any()


def test_onboarding_overflow_is_an_error_naming_the_capacity():
    book = scored_book(500, 2, onboarding_share=0.5)
    with pytest.raises(DataError, match=r"capacity\.mid_touch"):
        assign_tiers(book, policy_with(10, 20))


def test_highest_value_at_stake_fills_high_touch_first():
    book = scored_book(1500, 3, onboarding_share=0.05)
    policy = policy_with(40, 200)
    out = assign_tiers(book, policy)
    top = priority(out).nlargest(40).index
    assert (out.loc[top, "tier"] == "high_touch").all()
    high, mid, tech = (priority(out[out["tier"] == t]) for t in TIERS)
    assert high.min() >= mid.max()
    assert mid[out["lifecycle_stage"] == "established"].min() >= tech.max()


def noisy_copy(book: pd.DataFrame, rng: np.random.Generator, noise: float = 0.03) -> pd.DataFrame:
    """The same book re-scored with +-3% noise on risk and potential: nothing real changed."""
    jitter = lambda: 1 + rng.uniform(-noise, noise, len(book))  # noqa: E731
    return with_values(
        book.assign(churn_risk=book["churn_risk"] * jitter(), growth_potential=book["growth_potential"] * jitter())
    )


def test_hysteresis_cuts_flips_on_noise_but_large_changes_still_move():
    book = scored_book(5000, 4)
    policy = policy_with(500, 1500)  # shipped margin: 10%
    without = policy_with(500, 1500, margin=0.0)
    rng = np.random.default_rng(44)
    first = assign_tiers(book, policy)
    flip_counts = {}
    for name, pol in (("without", without), ("with", policy)):
        last, flip_counts[name] = first, 0
        for _ in range(5):  # five re-scorings of an unchanged book, each against the run before
            run = assign_tiers(noisy_copy(book, rng), pol, previous=last)
            flip_counts[name] += flips(last, run)
            last = run
    assert flip_counts["without"] >= 50, flip_counts  # noise alone really moves accounts across boundaries
    assert flip_counts["with"] <= 0.2 * flip_counts["without"], flip_counts
    noisy = noisy_copy(book, rng)

    # a real change: a tech-touch account's value at stake jumps 5x and must still move up
    tech = first[first["tier"] == "tech_touch"]
    mover = priority(tech).idxmax()
    jumped = noisy.copy()
    jumped.loc[mover, ["arr", "arr_at_risk", "expected_expansion"]] *= 5
    second = assign_tiers(jumped, policy, previous=first)
    assert second.loc[mover, "tier"] != "tech_touch"
    assert second.loc[mover, "previous_tier"] == "tech_touch"


def test_previous_tier_comes_from_previous_run_and_is_empty_without_one():
    book = scored_book(300, 5)
    first = assign_tiers(book, load_policy())
    assert first["previous_tier"].isna().all()
    newcomer = pd.concat([book, scored_book(1, 99)], ignore_index=True)
    second = assign_tiers(newcomer, load_policy(), previous=first)
    assert (second["previous_tier"].iloc[:300].to_numpy() == first["tier"].to_numpy()).all()
    assert pd.isna(second["previous_tier"].iloc[300])


def test_tech_touch_accounts_with_high_risk_or_arr_at_risk_or_little_history_escalate():
    book = scored_book(1000, 6, onboarding_share=0.0)
    book["insufficient_history"] = False
    # three small accounts that stay tech touch: one risky, one with ARR at risk over the bar, one too young
    book.loc[[900, 901, 902], ["churn_risk", "arr"]] = [[0.9, 100.0], [0.2, 5050.0], [0.01, 150.0]]
    book.loc[902, "insufficient_history"] = True
    book = with_values(book).assign(expected_expansion=0.0)
    policy = dataclasses.replace(policy_with(10, 50), escalate_churn_risk=0.4, escalate_arr_at_risk=1000.0)
    out = assign_tiers(book, policy)
    flagged = out.loc[[900, 901, 902]]
    assert (flagged["tier"] == "tech_touch").all() and flagged["escalate"].all()
    tech = out[out["tier"] == "tech_touch"]
    expected = (tech["churn_risk"] >= 0.4) | (tech["arr_at_risk"] >= 1000.0) | tech["insufficient_history"]
    assert (tech["escalate"] == expected).all() and (~expected).any()
    assert not out.loc[out["tier"] != "tech_touch", "escalate"].any()  # only tech touch escalates


def test_segments_follow_the_documented_rules():
    book = scored_book(2000, 7)
    policy = load_policy()
    out = assign_tiers(book, policy)
    save = out["churn_risk"] >= policy.save_min_risk
    young = (out["lifecycle_stage"] == "onboarding") | out["insufficient_history"]
    assert (out.loc[save, "segment"] == "save").all()
    assert (out.loc[~save & young, "segment"] == "onboard").all()
    grow = ~save & ~young & (out["growth_potential"] >= policy.grow_min_potential)
    assert (out.loc[grow, "segment"] == "grow").all()
    assert (out.loc[~save & ~young & ~grow, "segment"] == "nurture").all()
    assert set(out["segment"]) == {"save", "onboard", "grow", "nurture"}
    # young accounts are never left silently in tech touch
    young_tech = out[out["insufficient_history"] & (out["tier"] == "tech_touch")]
    assert young_tech["escalate"].all()


def test_hundred_thousand_accounts_are_routine():
    book = scored_book(100_000, 8, onboarding_share=0.004)
    started = time.perf_counter()
    out = assign_tiers(book, load_policy())
    elapsed = time.perf_counter() - started
    assert len(out) == 100_000 and out["tier"].notna().all()
    assert elapsed < 30  # a hang or quadratic blow-up guard, not a benchmark


def write_policy(tmp_path, edit) -> object:
    raw = yaml.safe_load(DEFAULT_POLICY.read_text())
    edit(raw)
    path = tmp_path / "tiers.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda p: p["capacity"].update(premium_touch={"csms": 1, "accounts_per_csm": 1}), "capacity.premium_touch"),
        (lambda p: p["capacity"]["mid_touch"].pop("csms"), "capacity.mid_touch.csms"),
        (lambda p: p["capacity"]["high_touch"].update(csms=-2), "capacity.high_touch.csms"),
        (lambda p: p["capacity"]["high_touch"].update(accounts_per_csm="twenty"), "capacity.high_touch.accounts_per"),
        (lambda p: p["escalate"].update(churn_risk=1.5), "escalate.churn_risk"),
        (lambda p: p.update(hysteresis_margins=0.1), "hysteresis_margins"),
        (lambda p: p.pop("segments"), "segments"),
    ],
)
def test_bad_policy_files_name_the_key(tmp_path, edit, named):
    with pytest.raises(DataError, match=named.replace(".", r"\.")):
        load_policy(write_policy(tmp_path, edit))


def test_policy_yaml_syntax_error_and_missing_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("capacity:\n  high_touch: [1, 2\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_policy(broken)
    with pytest.raises(DataError, match="nope.yaml"):
        load_policy(tmp_path / "nope.yaml")


def test_scored_input_problems_are_named():
    book = scored_book(20, 9)
    with pytest.raises(DataError, match="lifecycle_stage"):
        assign_tiers(book.drop(columns="lifecycle_stage"), load_policy())
    with pytest.raises(DataError, match="repeated"):
        assign_tiers(pd.concat([book, book.head(1)]), load_policy())
    with pytest.raises(DataError, match="previous scores: missing column"):
        assign_tiers(book, load_policy(), previous=book)
