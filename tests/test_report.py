"""CSM report: sections, top accounts with reasons, escaping, self-containment, atomic write, bad input.

The scored book is synthetic (numpy) in the documented output columns, tiered by the real
`assign_tiers`, with `reasons_json` in the shape `serving.reasons.reasons_json` writes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.io import write_table
from features.tables import DataError
from serving.report import money, write_report
from serving.tiers import DEFAULT_POLICY, allocation, assign_tiers, load_policy

MALICIOUS = "<script>alert(1)</script>"
FAMILIES = ["active_users", "support_ticket", "seat_utilisation", "tenure_days", "login"]
SECTIONS = [
    "Tiers and segments",
    "Capacity and coverage",
    "Renewals due this quarter",
    "Risk distribution",
    "What a risk score means",
    "Top accounts by ARR at risk",
    "Why these accounts are at risk",
    "Accounts that changed tier",
    "Escalations",
]


def reasons_for(rng: np.random.Generator, risk: float, account: int) -> tuple[list[str], str]:
    """Five worded drivers and the JSON cell: top drivers plus every family's points (summing to risk - base)."""
    base = 12.0
    points = rng.normal(0, 1, len(FAMILIES))
    points = points / np.abs(points).sum() * abs(100 * risk - base) * 1.3
    points[-1] += 100 * risk - base - points.sum()  # families add up to risk - base exactly
    order = np.argsort(-np.abs(points))
    texts = [f"Driver {FAMILIES[j]} of account {account} ({points[j]:+.1f} pts risk)" for j in order]
    churn = [
        {
            "driver": FAMILIES[j],
            "feature": FAMILIES[j],
            "text": texts[i],
            "points": round(float(points[j]), 2),
            "value": 1.0,
            "actionable": FAMILIES[j] != "tenure_days",
        }
        for i, j in enumerate(order)
    ]
    cell = {
        "churn": churn,
        "growth": [],
        "churn_families": dict(zip(FAMILIES, points.round(4).tolist(), strict=True)),
        "growth_families": {},
    }
    return texts, json.dumps(cell)


def scored_book(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A scored book in the documented output columns, tiered by the real policy code."""
    rng = np.random.default_rng(seed)
    arr = rng.lognormal(9.5, 1.1, n)
    risk = rng.beta(1.5, 7.0, n)
    growth = rng.beta(1.5, 6.0, n)
    days = rng.integers(0, 365, n).astype(float)
    as_of = pd.Timestamp("2026-10-01")
    ids = [f"acct-{i:04d}" for i in range(n)]
    ids[7] = MALICIOUS
    book = pd.DataFrame(
        {
            "account_id": ids,
            "as_of": as_of,
            "churn_risk": risk,
            "growth_potential": growth,
            "arr": arr,
            "renewal_date": as_of + pd.to_timedelta(days, unit="D"),
            "days_to_renewal": days,
            "arr_at_risk": risk * arr,
            "expected_expansion": growth * arr * 0.2,
            "insufficient_history": rng.random(n) < 0.03,
            "lifecycle_stage": np.where(rng.random(n) < 0.1, "onboarding", "established"),
        }
    )
    book.loc[7, ["churn_risk", "arr"]] = [0.8, 5e6]  # the malicious id is the top account by ARR at risk
    book["arr_at_risk"] = book["churn_risk"] * book["arr"]
    reasons = [reasons_for(rng, r, i) for i, r in enumerate(book["churn_risk"])]
    for k in range(5):
        book[f"reason_{k + 1}"] = [texts[k] for texts, _ in reasons]
    book["reasons_json"] = [cell for _, cell in reasons]
    book["churn_model_version"] = "3"
    book["growth_model_version"] = "2"
    return assign_tiers(book, small_team())


def small_team():
    """The shipped policy with a team sized for a 300-account book (one onboarding CSM of 20 accounts)."""
    return dataclasses.replace(
        load_policy(),
        capacity={"high_touch": 20, "mid_touch": 60, "onboarding": 20},
        per_csm={"high_touch": 10, "mid_touch": 30, "onboarding": 20},
    )


def small_team_file(folder) -> Path:
    """`small_team` as the YAML file `tierwise report --policy` reads."""
    raw = yaml.safe_load(DEFAULT_POLICY.read_text())
    raw["capacity"] = {"high_touch": [2, 10], "mid_touch": [2, 30], "onboarding": [1, 20]}
    raw["capacity"] = {k: {"csms": c, "accounts_per_csm": a} for k, (c, a) in raw["capacity"].items()}
    path = folder / "small-team.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_policy(path).capacity == small_team().capacity
    return path


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    """Two runs: the second re-scored with real changes for some accounts, against the first."""
    folder = tmp_path_factory.mktemp("scores")
    first = scored_book()
    changed = first.drop(columns=["tier", "previous_tier", "segment", "escalate"])
    tech = first[first["tier"] == "tech_touch"]
    movers = (tech["arr_at_risk"] + tech["expected_expansion"]).nlargest(3).index
    changed.loc[movers, ["arr", "arr_at_risk", "expected_expansion"]] *= 8
    second = assign_tiers(changed, small_team(), first)
    return write_table(second, folder / "scores.parquet"), second, list(first.loc[movers, "account_id"])


@pytest.fixture(scope="module")
def html(scores, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    out = write_report(scores[0], folder / "report.html", small_team_file(folder))
    return out.read_text()


def test_report_has_every_section(html):
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html


def test_top_accounts_appear_with_their_reasons(html, scores):
    frame = scores[1]
    top = frame.nlargest(5, "arr_at_risk")
    section = html[html.index('id="top-accounts"') : html.index('id="waterfalls"')]
    for _, row in top.iterrows():
        if row["account_id"] == MALICIOUS:
            continue
        assert row["account_id"] in section
        for k in range(1, 6):
            assert row[f"reason_{k}"] in section


def test_waterfall_adds_up_from_base_to_risk(html, scores):
    top = scores[1].nlargest(2, "arr_at_risk").iloc[1]
    section = html[html.index('id="waterfalls"') : html.index('id="tier-changes"')]
    block = section[section.index(top["account_id"]) :]
    block = block[: block.index('class="wf-row total"')]
    base = float(re.search(r"Model baseline.*?([-\d.]+)%</div>", block, re.S).group(1))
    steps = [float(x) for x in re.findall(r'<div class="pts">([+-][\d.]+)</div>', block)]
    assert base == pytest.approx(12.0, abs=0.1)
    assert base + sum(steps) == pytest.approx(100 * top["churn_risk"], abs=0.5)


def test_account_data_is_escaped(html):
    assert MALICIOUS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()


def test_report_is_self_contained(html):
    assert not re.search(r"https?://", html)
    assert not re.search(r"""(src|href)\s*=\s*["']?(?!#)""", html)  # no images, stylesheets or scripts to fetch


def test_tier_changes_and_renewals_are_listed(html, scores):
    frame = scores[1]
    moved = frame[frame["previous_tier"].notna() & (frame["previous_tier"] != frame["tier"])]
    assert len(moved) >= 3
    section = html[html.index('id="tier-changes"') : html.index('id="escalations"')]
    for account in scores[2]:  # the three tech-touch accounts whose value at stake jumped 8x
        assert account in section
    assert "boundary" in section
    due = frame[frame["days_to_renewal"] <= 90]
    assert f"{len(due)} accounts renew within 90 days" in html


def test_csv_scores_work_too(scores, tmp_path):
    csv = write_table(scores[1], tmp_path / "scores.csv")
    out = write_report(csv, tmp_path / "report.html")
    text = out.read_text()
    assert "<h2>Escalations</h2>" in text and "acct-0010" in text


def test_written_atomically(scores, tmp_path):
    out = tmp_path / "report.html"
    out.write_text("old report")
    with pytest.raises(DataError):
        write_report(tmp_path / "missing.parquet", out)
    assert out.read_text() == "old report"  # a failed run leaves the previous page intact
    write_report(scores[0], out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left behind


def test_bad_input_names_the_problem(scores, tmp_path):
    with pytest.raises(DataError, match="missing.parquet"):
        write_report(tmp_path / "missing.parquet", tmp_path / "r.html")
    broken = write_table(scores[1].drop(columns=["reason_3", "tier"]), tmp_path / "broken.parquet")
    with pytest.raises(DataError, match="tier, reason_3"):
        write_report(broken, tmp_path / "r.html")
    (tmp_path / "garbage.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="cannot read"):
        write_report(tmp_path / "garbage.parquet", tmp_path / "r.html")


def test_report_command_writes_the_page_and_fails_cleanly(scores, tmp_path):
    run = [sys.executable, "-c", "from tierwise.cli import main; main()", "report"]
    done = subprocess.run([*run, "--scores", str(scores[0]), "--out", str(tmp_path / "r.html")], capture_output=True)
    assert done.returncode == 0, done.stderr
    assert "<h2>Top accounts by ARR at risk</h2>" in (tmp_path / "r.html").read_text()
    failed = subprocess.run([*run, "--scores", str(tmp_path / "nope.csv")], capture_output=True, text=True)
    assert failed.returncode == 2
    assert "nope.csv" in failed.stderr and "Traceback" not in failed.stderr


def test_scores_without_reasons_still_render(scores, tmp_path):
    bare = scores[1].assign(reasons_json=None, **{f"reason_{k}": None for k in range(1, 6)})
    out = write_report(write_table(bare, tmp_path / "bare.parquet"), tmp_path / "bare.html").read_text()
    assert "No driver breakdown in the scores file" in out
    assert "<h2>Top accounts by ARR at risk</h2>" in out and "no reasons in the scores file" in out


def test_non_numeric_risk_is_named(scores, tmp_path):
    bad = scores[1].assign(churn_risk=scores[1]["churn_risk"].astype(object))
    bad.loc[3, "churn_risk"] = "high"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="churn_risk is empty or not a number in 1 row"):
        write_report(tmp_path / "bad.csv", tmp_path / "r.html")


def test_main_reason_is_the_strongest_actionable_driver():
    from serving.report import records

    frame = pd.DataFrame(
        {
            "reason_1": ["12 days until the term renews (+9 pts risk, not actionable)", "tenure (not actionable)"],
            "reason_2": ["Active users down 45% (last 30 days vs the 30 before) (+6 pts risk)", None],
            "reason_3": [None, None],
            "reason_4": [None, None],
            "reason_5": [None, None],
        }
    )
    first, second = records(frame)
    assert first["main_reason"].startswith("Active users down 45%")
    assert second["main_reason"] == "tenure (not actionable)"  # nothing actionable: the strongest driver


def test_capacity_section_shows_expected_coverage_pools_and_one_csm_table(html, scores):
    book = scores[1]
    alloc = allocation(book, small_team())
    section = html[html.index('id="capacity"') : html.index('id="renewals"')]
    assert f"<strong>{alloc.coverage:.1%}</strong> of the book" in section
    for pool, places in small_team().capacity.items():
        label = pool.replace("_", " ")
        assert f'<td>{label}</td><td class="num">{places:,}</td>' in section
    staffing = section[section.index("One CSM more or fewer") :]
    for row in alloc.staffing.itertuples():
        assert f"{row.one_more:.1%}" in staffing and f"{row.one_fewer:.1%}" in staffing
    onboarding = book["lifecycle_stage"] == "onboarding"
    if int((onboarding & (book["tier"] != "high_touch")).sum()) > 20:
        assert f"{alloc.overflow_accounts} onboarding account(s) have no" in section
    # no MLflow store here: the backtest figures are said to be missing, not invented
    assert "Not recorded: the churn model that scored this book has no coverage replay" in section


def test_capacity_section_with_another_policy_leaves_the_staffing_table_out(scores, tmp_path):
    text = write_report(scores[0], tmp_path / "r.html").read_text()  # the shipped policy, not the small team's
    section = text[text.index('id="capacity"') : text.index('id="renewals"')]
    assert "the tiers in the scores file were not made with the policy" in section
    assert '<th class="num">One more</th>' not in section


def test_onboarding_overflow_is_reported_with_missing_places_and_value(tmp_path):
    book = scored_book().drop(columns=["tier", "previous_tier", "pool", "segment", "escalate", "onboarding_overflow"])
    book["lifecycle_stage"] = np.where(np.arange(len(book)) % 2 == 0, "onboarding", "established")
    tiered = assign_tiers(book, small_team())
    flagged = tiered[tiered["onboarding_overflow"]]
    assert len(flagged) > 20
    path = write_table(tiered, tmp_path / "s.parquet")
    text = write_report(path, tmp_path / "r.html", small_team_file(tmp_path)).read_text()
    value = (flagged["arr_at_risk"] + flagged["expected_expansion"]).sum()
    missing = -(-len(flagged) // 20)
    assert f"{len(flagged)} onboarding account(s) have no" in text
    assert f"{money(value)} value at stake uncovered): about {missing} more" in text


def test_bad_report_policy_is_named(scores, tmp_path):
    (tmp_path / "p.yaml").write_text("capacity: {}\n")
    with pytest.raises(DataError, match="capacity.high_touch: missing key"):
        write_report(scores[0], tmp_path / "r.html", tmp_path / "p.yaml")
