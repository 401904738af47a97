"""Tier policy: capacity pools, onboarding pool and overflow, priority order, hysteresis, escalation, segments,
expected coverage and the one-CSM table, bad policy files.

Scored books are generated with numpy: the policy needs no model, only the scored columns.
"""

from __future__ import annotations

import dataclasses
import re
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from features.tables import DataError
from serving.tiers import DEFAULT_POLICY, POOLS, TIERS, allocation, assign_tiers, load_policy


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


def policy_with(high: int, mid: int, margin: float | None = None, onboarding: int | None = None):
    policy = load_policy()
    onboarding = policy.capacity["onboarding"] if onboarding is None else onboarding
    changes = {"capacity": {"high_touch": high, "mid_touch": mid, "onboarding": onboarding}}
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
    for pool in ("high_touch", "mid_touch", "onboarding"):
        staffing = raw["capacity"][pool]
        assert policy.capacity[pool] == staffing["csms"] * staffing["accounts_per_csm"] > 0
        assert policy.csms(pool) == staffing["csms"] and policy.per_csm[pool] == staffing["accounts_per_csm"]
    assert "tech_touch" not in policy.capacity


@pytest.mark.parametrize("seed", range(6))
def test_capacities_never_exceeded(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(50, 3000))
    book = scored_book(n, seed, onboarding_share=float(rng.uniform(0, 0.4)))
    onboarding = book["lifecycle_stage"] == "onboarding"
    high, mid, onb = (int(rng.integers(0, n // 3 + 1)) for _ in range(3))
    policy = policy_with(high, mid, margin=float(rng.uniform(0, 0.5)), onboarding=onb)
    first = assign_tiers(book, policy)
    perturbed = with_values(book.assign(churn_risk=book["churn_risk"] * rng.uniform(0.5, 1.5, n)))
    second = assign_tiers(perturbed, policy, previous=first)  # hysteresis must not break capacity either
    for out in (first, second):
        pools = out["pool"].value_counts()
        assert set(out["tier"]) <= set(TIERS) and set(pools.index) <= {*POOLS, "tech_touch"}
        # every pool is filled up to its capacity while it has accounts to compete for it, never beyond
        in_high = out["tier"] == "high_touch"
        assert pools.get("high_touch", 0) == min(high, n)
        assert pools.get("onboarding", 0) == min(onb, int((onboarding & ~in_high).sum()))
        assert pools.get("mid_touch", 0) == min(mid, int((~onboarding & ~in_high).sum()))
        assert (out["tier"] == "mid_touch").sum() == pools.get("mid_touch", 0) + pools.get("onboarding", 0)
        # an onboarding account is tech touch only as flagged, escalated overflow
        tech_onboarding = onboarding & (out["tier"] == "tech_touch")
        assert (out["onboarding_overflow"] == tech_onboarding).all() and out.loc[tech_onboarding, "escalate"].all()


def test_onboarding_accounts_get_the_onboarding_pool_and_leave_mid_touch_to_established_accounts():
    book = scored_book(2000, 1, onboarding_share=0.15)
    onboarding = book["lifecycle_stage"] == "onboarding"
    policy = policy_with(50, 300, onboarding=int(onboarding.sum()))  # the onboarding pool holds every one of them
    out = assign_tiers(book, policy)
    assert not (out.loc[onboarding, "tier"] == "tech_touch").any() and not out["onboarding_overflow"].any()
    assert (out.loc[onboarding & (out["tier"] == "mid_touch"), "pool"] == "onboarding").all()
    # mid_touch places all go to established accounts, the highest value at stake first
    established = out[~onboarding & (out["tier"] != "high_touch")]
    assert (out["pool"] == "mid_touch").sum() == 300 == (established["pool"] == "mid_touch").sum()
    assert (
        priority(established[established["pool"] == "mid_touch"]).min()
        >= priority(established[established["tier"] == "tech_touch"]).max()
    )
    # a high-value onboarding account can still win a high-touch place
    star = priority(book[onboarding]).idxmax()
    book.loc[star, ["arr", "arr_at_risk", "expected_expansion"]] *= 100
    assert assign_tiers(book, policy).loc[star, "tier"] == "high_touch"


def test_more_onboarding_accounts_than_every_human_place_is_flagged_not_fatal():
    """The issue's fast-growing book: onboarding accounts outnumber all human places; retention keeps its CSMs."""
    book = scored_book(1000, 2, onboarding_share=0.5)
    onboarding = book["lifecycle_stage"] == "onboarding"
    policy = policy_with(20, 80, onboarding=100)
    assert onboarding.sum() > sum(policy.capacity.values())
    out = assign_tiers(book, policy)  # no DataError any more
    established = out[~onboarding]
    # the established accounts with the most value at stake all have a human (high or mid touch)
    top = priority(established).nlargest(80).index
    assert (out.loc[top, "tier"] != "tech_touch").all()
    assert (out["pool"] == "mid_touch").sum() == 80 and (
        out.loc[out["pool"] == "mid_touch", "lifecycle_stage"] == "established"
    ).all()
    # onboarding places go to the onboarding accounts with the most value at stake; the rest are flagged
    waiting = out[onboarding & (out["tier"] != "high_touch")]
    placed, overflow = waiting[waiting["pool"] == "onboarding"], waiting[waiting["onboarding_overflow"]]
    assert len(placed) == 100 and len(overflow) == len(waiting) - 100
    assert priority(placed).min() >= priority(overflow).max()
    assert (overflow["tier"] == "tech_touch").all() and overflow["escalate"].all()
    assert (overflow["segment"].isin(["save", "onboard"])).all()  # their playbook still says onboarding (or saving)
    # and the allocation says how many places are missing and what value they leave uncovered
    alloc = allocation(out, policy)
    assert alloc.overflow_accounts == len(overflow)
    assert alloc.overflow_value == pytest.approx(priority(overflow).sum())
    assert any(f"{len(overflow):,} onboarding account(s) without a place" in line for line in alloc.lines())


def test_expected_coverage_and_one_csm_more_or_fewer_match_a_hand_count():
    # six accounts, value at stake 60, 50, 40, 30, 20, 10 (total 210); two onboarding accounts (50 and 20)
    book = pd.DataFrame(
        {
            "account_id": list("abcdef"),
            "churn_risk": 0.1,
            "growth_potential": 0.0,
            "arr": [600.0, 500.0, 400.0, 300.0, 200.0, 100.0],
            "lifecycle_stage": ["established", "onboarding", "established", "established", "onboarding", "established"],
            "insufficient_history": False,
            "days_to_renewal": 100.0,
        }
    )
    policy = dataclasses.replace(
        load_policy(),
        capacity={"high_touch": 1, "mid_touch": 1, "onboarding": 1},
        per_csm={"high_touch": 1, "mid_touch": 1, "onboarding": 1},
    )
    out = assign_tiers(with_values(book), policy)
    # high: a (60); onboarding pool: b (50); mid: c (40); d, e, f tech; e is an onboarding account left over
    assert out["pool"].tolist() == ["high_touch", "onboarding", "mid_touch", "tech_touch", "tech_touch", "tech_touch"]
    assert out["onboarding_overflow"].tolist() == [False, False, False, False, True, False]
    alloc = allocation(out, policy)
    assert alloc.coverage == pytest.approx(150 / 210)
    assert (alloc.overflow_accounts, alloc.overflow_value) == (1, pytest.approx(20.0))
    table = alloc.staffing.set_index("pool")
    # one more high-touch CSM: a, b in high; onboarding pool takes e (20); mid c -> 60+50+20+40 = 170
    # one fewer: no high touch; onboarding b, mid a -> 110.  Mid: one more adds d (180), one fewer drops c (110).
    # Onboarding: one more adds e (170), one fewer drops b (100).
    expected = {"high_touch": (110, 150, 170), "mid_touch": (110, 150, 180), "onboarding": (100, 150, 170)}
    for pool, values in expected.items():
        got = table.loc[pool, ["one_fewer", "now", "one_more"]].to_numpy(dtype=float)
        assert got == pytest.approx(np.array(values) / 210), pool
    empty = dataclasses.replace(policy, capacity=policy.capacity | {"onboarding": 0})
    assert np.isnan(
        allocation(assign_tiers(with_values(book), empty), empty)
        .staffing.set_index("pool")
        .loc["onboarding", "one_fewer"]
    )


def test_highest_value_at_stake_fills_high_touch_first():
    book = scored_book(1500, 3, onboarding_share=0.05)
    policy = policy_with(40, 200)
    out = assign_tiers(book, policy)
    top = priority(out).nlargest(40).index
    assert (out.loc[top, "tier"] == "high_touch").all()
    high, mid, tech = (priority(out[out["pool"] == t]) for t in TIERS)
    assert high.min() >= max(mid.max(), priority(out[out["pool"] == "onboarding"]).max())
    assert mid.min() >= tech[out["lifecycle_stage"] == "established"].max()


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
        (lambda p: p["capacity"]["onboarding"].update(csms=-1), "capacity.onboarding.csms"),
        (lambda p: p["capacity"]["onboarding"].update(accounts_per_csm=-40), "capacity.onboarding.accounts_per_csm"),
        (lambda p: p["capacity"].pop("onboarding"), "capacity.onboarding: missing key (the onboarding team"),
        (lambda p: p["capacity"]["onboarding"].update(seats=3), "capacity.onboarding.seats: unknown key"),
        (lambda p: p["escalate"].update(churn_risk=1.5), "escalate.churn_risk"),
        (lambda p: p.update(hysteresis_margins=0.1), "hysteresis_margins"),
        (lambda p: p.pop("segments"), "segments"),
    ],
)
def test_bad_policy_files_name_the_key(tmp_path, edit, named):
    with pytest.raises(DataError, match=re.escape(named)):
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
