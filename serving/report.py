"""The CSM report: one self-contained HTML page from a scores file.

A CS leader opens it before the renewal quarter: how the book splits into tiers and segments,
which renewals are due and how risky they are, what a risk score means, which accounts carry
the most ARR at risk and why, and who changed tier. It must open anywhere (a laptop offline,
an email attachment), so CSS and charts are inline (SVG, no JavaScript, no external URL), and
all account data goes through Jinja's autoescaping because it comes from customers.

The capacity section answers the staffing question: what the human-touch tiers are expected to
cover now, what one CSM more or fewer in each pool would change (the policy is re-applied to the
book, so it must be the policy the book was scored with), what is missing when onboarding
overflows, and what this capacity covered on the backtest of the model that scored the book
(read from that model's MLflow run: serving never imports training).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import jinja2
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.io import read_user_table, write_text
from features.tables import DataError
from serving import registry
from serving.scoring import GROWTH_REASONS, OUTPUT, REASONS
from serving.tiers import POOLS, TECH, TIERS, Standing, TierPolicy, allocation, held_tiers, load_policy, place
from tierwise import settings

TEMPLATES = Path(__file__).with_name("templates")
# The report reads the scoring output; it needs everything up to the reasons, not the extras after them.
OPTIONAL = ("lifecycle_stage", *GROWTH_REASONS, "persona", "play", "adoption_gaps")  # absent from older score files
REQUIRED = [c for c in OUTPUT[: OUTPUT.index("reasons_json") + 1] if c not in OPTIONAL]
NUMBERS = ["churn_risk", "growth_potential", "arr", "arr_at_risk", "expected_expansion", "days_to_renewal"]
QUARTER_DAYS = 90
SHOWN = 50  # rows per list; the scores file has the rest
TOP_ACCOUNTS = 20
WATERFALLS = 8
BINS = 20
RISK_BANDS = [0.0, 0.1, 0.2, 0.3, 0.5, 1.0]
POINTS_SUFFIX = re.compile(r"\s*\([+\u2212-]?[\d.]+ pts [^)]*\)$")  # "(+12 pts risk)": the waterfall shows points
SEGMENTS = {  # segment: playbook, in the order a leader reads them (see serving/tiers.yaml)
    "save": "risk review, executive outreach, fix the drivers",
    "onboard": "drive first value and adoption milestones",
    "grow": "expansion conversation: seats, modules, upsell",
    "nurture": "keep healthy: advocacy, references, digital programme",
}


def write_report(scores_path: Path | str, out: Path | str, policy_path: Path | str | None = None) -> Path:
    """Render the report for a scores file (`tierwise score` output, CSV or Parquet) to `out`, atomically.

    Args:
        policy_path: the tier policy the book was scored with (default: the shipped one), for
            the one-CSM-more-or-fewer table.

    Raises:
        DataError: the scores file is missing, unreadable, empty or lacks a documented column,
            or the policy file is bad.
    """
    policy = load_policy(policy_path)
    scores = read_scores(Path(scores_path))
    html = render(scores, source=Path(scores_path).name, policy=policy)
    return write_text(html, out)


def read_scores(path: Path) -> pd.DataFrame:
    """The scores table with the columns the report reads, typed."""
    frame = read_user_table(path, "scores file", tuple(REQUIRED))
    for col in NUMBERS:
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any():
            raise DataError(f"scores file {path}: {col} is empty or not a number in {int(values.isna().sum())} row(s)")
        frame[col] = values.astype(float)
    frame["account_id"] = frame["account_id"].astype(str)
    frame["priority"] = frame["arr_at_risk"] + frame["expected_expansion"]
    frame["previous_tier"] = frame["previous_tier"].astype("string").replace("", pd.NA)
    for col in ("escalate", "insufficient_history", "onboarding_overflow"):
        frame[col] = frame[col].astype(str).str.lower().isin(["true", "1"])
    return frame


def render(scores: pd.DataFrame, source: str, policy: TierPolicy | None = None) -> str:
    """The whole page as a string (`policy`: the one the book was scored with; default the shipped one)."""
    policy = policy or load_policy()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters.update(money=money, pct=pct, day=day)
    context = {
        "source": source,
        "as_of": first_value(scores, "as_of"),
        "versions": {k: first_value(scores, f"{k}_model_version") for k in ("churn", "growth")},
        "headline": headline(scores),
        "by_tier": breakdown(scores, "tier", TIERS),
        "capacity": capacity(scores, policy),
        "last_time": last_time(first_value(scores, "churn_model_version"), policy),
        "by_segment": breakdown(scores, "segment", list(SEGMENTS)),
        "by_persona": breakdown(scores, "persona", []) if "persona" in scores else [],  # none in older score files
        "playbooks": SEGMENTS,
        "renewals": renewals(scores),
        "histogram": histogram(scores["churn_risk"].to_numpy(float)),
        "bands": calibration_bands(scores),
        "measured": run_record(first_value(scores, "churn_model_version"), "churn_report/shipped_calibration.json"),
        "top": top_accounts(scores),
        "waterfalls": [waterfall(row) for _, row in scores.nlargest(WATERFALLS, "arr_at_risk").iterrows()],
        "moves": tier_changes(scores),
        "escalations": escalations(scores),
        "quarter_days": QUARTER_DAYS,
    }
    return env.get_template("report.html.j2").render(**context)


def first_value(scores: pd.DataFrame, col: str) -> str:
    """A column that is constant over a batch (as-of date, model version), as text; '' when absent."""
    if col not in scores.columns or scores[col].isna().all():
        return ""
    value = scores[col].dropna().iloc[0]
    return day(value) if col == "as_of" else str(value)


def headline(scores: pd.DataFrame) -> dict:
    """The numbers a leader reads first."""
    due = scores["days_to_renewal"] <= QUARTER_DAYS
    return {
        "accounts": len(scores),
        "arr": scores["arr"].sum(),
        "arr_at_risk": scores["arr_at_risk"].sum(),
        "expected_churners": scores["churn_risk"].sum(),
        "expected_expansion": scores["expected_expansion"].sum(),
        "renewing": int(due.sum()),
        "renewing_arr": scores.loc[due, "arr"].sum(),
        "escalations": int(scores["escalate"].sum()),
    }


def breakdown(scores: pd.DataFrame, by: str, order: list[str] | tuple[str, ...]) -> list[dict]:
    """Accounts, ARR, ARR at risk, expected expansion and escalations per tier or segment."""
    grouped = scores.groupby(by, observed=True).agg(
        accounts=("account_id", "size"),
        arr=("arr", "sum"),
        arr_at_risk=("arr_at_risk", "sum"),
        expected_expansion=("expected_expansion", "sum"),
        mean_risk=("churn_risk", "mean"),
        escalations=("escalate", "sum"),
    )
    names = list(order) + sorted(set(grouped.index) - set(order))
    grouped = grouped.reindex(names).dropna(how="all")
    total_arr = scores["arr"].sum() or 1.0
    return [{"name": name, **row, "arr_share": row["arr"] / total_arr} for name, row in grouped.iterrows()]


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with their reasons gathered into one list (blank reasons left out).

    `main_reason` is the strongest driver a CSM can act on: renewal timing or tenure may weigh
    more, but a list that starts a renewal meeting should say what to work on.
    """
    return [with_reasons(row) for row in frame.to_dict("records")]


def with_reasons(row: dict) -> dict:
    """One row (a dict with `reason_1..5`) with its `reasons` list and `main_reason` added (see `records`)."""
    row["reasons"] = [r for r in (row.get(c) for c in REASONS) if isinstance(r, str) and r.strip()]
    actionable = [r for r in row["reasons"] if "not actionable" not in r]
    row["main_reason"] = (actionable or row["reasons"] or [""])[0]
    return row


def renewals(scores: pd.DataFrame) -> dict:
    """Renewals due this quarter, biggest ARR at risk first: the list a renewal meeting starts from."""
    due = scores[scores["days_to_renewal"] <= QUARTER_DAYS]
    return {"total": len(due), "rows": records(due.nlargest(SHOWN, "arr_at_risk"))}


def top_accounts(scores: pd.DataFrame) -> list[dict]:
    """The accounts with the most ARR at risk, with their reasons."""
    return records(scores.nlargest(TOP_ACCOUNTS, "arr_at_risk"))


def escalations(scores: pd.DataFrame) -> dict:
    """Tech-touch accounts flagged for a human look, biggest ARR at risk first."""
    flagged = scores[scores["escalate"]]
    return {"total": len(flagged), "rows": records(flagged.nlargest(SHOWN, "arr_at_risk"))}


def histogram(risk: np.ndarray, width: int = 760, height: int = 200) -> dict:
    """Bars of the risk distribution, laid out for an inline SVG (x in 0..1 risk, counts on y)."""
    counts, edges = np.histogram(np.clip(risk, 0, 1), bins=BINS, range=(0.0, 1.0))
    peak = max(int(counts.max()), 1)
    step = width / BINS
    bars = [
        {
            "x": i * step + 1,
            "w": step - 2,
            "h": height * c / peak,
            "y": height - height * c / peak,
            "count": int(c),
            "label": f"{edges[i]:.0%}–{edges[i + 1]:.0%}",
            "band": risk_band(edges[i]),
        }
        for i, c in enumerate(counts)
    ]
    ticks = [{"x": width * t, "label": f"{t:.0%}"} for t in (0, 0.25, 0.5, 0.75, 1.0)]
    return {"bars": bars, "ticks": ticks, "width": width, "height": height, "peak": peak}


def risk_band(risk: float) -> str:
    """CSS class for a risk level: the colour a leader's eye goes to."""
    return "high" if risk >= 0.3 else "medium" if risk >= 0.15 else "low"


def calibration_bands(scores: pd.DataFrame) -> list[dict]:
    """Per risk band: accounts, expected churners (the sum of calibrated risks), ARR and ARR at risk."""
    band = pd.cut(scores["churn_risk"].clip(0, 1), RISK_BANDS, include_lowest=True, right=False)
    grouped = scores.groupby(band, observed=False).agg(
        accounts=("account_id", "size"),
        expected=("churn_risk", "sum"),
        arr=("arr", "sum"),
        arr_at_risk=("arr_at_risk", "sum"),
    )
    return [{"label": f"{iv.left:.0%}–{iv.right:.0%}", **row} for iv, row in grouped.iterrows() if row["accounts"] > 0]


def waterfall(row: pd.Series) -> dict:
    """One account's risk built up from the base rate by its churn drivers (percentage points).

    `reasons_json` holds the top drivers (`churn`: text, points, actionable) and every driver
    family's points (`churn_families`), which add up to risk minus base rate; the base rate and
    an "other drivers" step are derived from them. Rows without usable JSON get no steps.
    """
    risk = 100.0 * float(row["churn_risk"])
    drivers, families = parsed_reasons(row["reasons_json"])
    total = sum(families.values()) if families else sum(d["points"] for d in drivers)
    base = risk - total
    steps, level = [], base
    other = total - sum(d["points"] for d in drivers)
    named = [(POINTS_SUFFIX.sub("", d["text"]), d["points"], d["actionable"]) for d in drivers]
    if abs(other) >= 0.05:
        named.append(("All other drivers", other, None))
    for text, points, actionable in named:
        steps.append({"text": text, "points": points, "start": level, "end": level + points, "actionable": actionable})
        level += points
    scale = max([base, risk, *[max(s["start"], s["end"]) for s in steps]], default=1.0) or 1.0
    for step in steps:
        step["left"] = 100.0 * min(step["start"], step["end"]) / scale
        step["width"] = max(100.0 * abs(step["points"]) / scale, 0.4)
    return {
        "account_id": row["account_id"],
        "tier": row["tier"],
        "risk": risk,
        "base": base,
        "base_width": 100.0 * max(base, 0.0) / scale,
        "risk_width": 100.0 * risk / scale,
        "steps": steps,
    }


def parsed_reasons(text) -> tuple[list[dict], dict[str, float]]:
    """(churn drivers, every family's points) from a `reasons_json` cell; empty when there is none."""
    if not isinstance(text, str) or not text.strip():
        return [], {}
    try:
        data = json.loads(text)
    except ValueError:
        return [], {}
    if not isinstance(data, dict):
        return [], {}
    drivers = [
        {"text": str(d.get("text") or d.get("driver")), "points": float(d["points"]), "actionable": d.get("actionable")}
        for d in data.get("churn") or []
        if isinstance(d, dict) and isinstance(d.get("points"), int | float)
    ]
    families = {k: float(v) for k, v in (data.get("churn_families") or {}).items() if isinstance(v, int | float)}
    return drivers, families


def tier_changes(scores: pd.DataFrame) -> dict:
    """Accounts whose tier differs from last run's, biggest value at stake first, each with why."""
    moved = scores[scores["previous_tier"].notna() & (scores["previous_tier"] != scores["tier"])]
    cutoffs = tier_cutoffs(scores)
    rank = {tier: i for i, tier in enumerate(TIERS)}
    rows = records(moved.nlargest(SHOWN, "priority"))
    for row in rows:
        up = rank.get(row["tier"], 2) < rank.get(row["previous_tier"], 2)
        row["direction"] = "up" if up else "down"
        row["why"] = move_reason(row, cutoffs, up)
        row["changes"] = row.get("changes") if isinstance(row.get("changes"), str) else ""
    return {"total": len(moved), "rows": rows}


def tier_cutoffs(scores: pd.DataFrame) -> dict[str, float]:
    """The lowest value at stake holding a place in each pool with a capacity (the boundary)."""
    return {pool: scores.loc[scores["pool"] == pool, "priority"].min() for pool in POOLS}


def move_reason(row: dict, cutoffs: dict[str, float], up: bool) -> str:
    """Why an account moved, in the policy's terms: value at stake against the boundary it crossed.

    A move up is told against the pool the account joined; a move down against the pool it
    competes for now (established accounts leave the onboarding pool at their first renewal).
    """
    value = money(row["priority"])
    if up:
        pool = row["pool"]
        return f"Value at stake {value} now clears the {label(pool)} boundary ({money(cutoffs.get(pool))})"
    onboarding = row.get("lifecycle_stage") == "onboarding" and row["previous_tier"] == "mid_touch"
    lost = "onboarding" if onboarding else row["previous_tier"]
    return f"Value at stake {value} fell below the {label(lost)} boundary ({money(cutoffs.get(lost))})"


def capacity(scores: pd.DataFrame, policy: TierPolicy) -> dict:
    """The capacity section: pools, expected coverage, onboarding overflow and the one-CSM table.

    The staffing table re-applies the policy to the book; when that does not reproduce the
    book's tiers, the book was scored with another policy and the table would mislead, so it
    is left out with a note saying which option to pass.
    """
    standing = Standing.of(scores, held_tiers(scores["previous_tier"]))
    reproduced = bool((place(standing, policy) == scores["tier"].to_numpy(dtype=object)).all())
    alloc = allocation(scores, policy)
    pools = scores.groupby("pool", observed=True).agg(accounts=("account_id", "size"), value=("priority", "sum"))
    total = scores["priority"].sum() or 1.0
    rows = [
        {
            "pool": pool,
            "places": policy.capacity.get(pool),
            "accounts": int(pools["accounts"].get(pool, 0)),
            "value_share": float(pools["value"].get(pool, 0.0)) / total,
        }
        for pool in (*POOLS, TECH)
    ]
    return {
        "coverage": alloc.coverage,
        "overflow_accounts": alloc.overflow_accounts,
        "overflow_value": alloc.overflow_value,
        "missing_csms": -(-alloc.overflow_accounts // policy.per_csm["onboarding"])
        if policy.per_csm["onboarding"]
        else 0,
        "pools": rows,
        "staffing": alloc.staffing.to_dict("records") if reproduced else [],
        "policy": policy.source,
    }


def run_record(churn_version: str, artifact: str) -> dict | None:
    """A JSON artifact of the run that trained the churn model that scored the book; None when not in the store."""
    uri = settings.tracking_uri()
    if not churn_version or (uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()):
        return None  # nothing to read, and a report must not create an empty store as a side effect
    try:
        mlflow.set_tracking_uri(uri)
        run_id = MlflowClient().get_model_version(registry.CHURN, churn_version).run_id
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{artifact}")
    except (MlflowException, OSError, ValueError):
        return None


def last_time(churn_version: str, policy: TierPolicy) -> dict | None:
    """What the policy covered on the backtest of the churn model that scored the book (its run's `coverage.json`).

    None when the model or its record is not in the tracking store (a model trained before the replay existed).
    """
    record = run_record(churn_version, "coverage.json")
    if record is None:
        return None
    rows = record["table"]
    overall = {r["strategy"]: r for r in rows if r["scope"] == "overall"}
    folds = sorted({r["scope"] for r in rows if r["scope"] != "overall"})
    by_fold = {(r["scope"], r["strategy"]): r["value"] for r in rows}
    return {
        "version": churn_version,
        "capacity": record["policy"]["capacity"],
        "strategies": [
            {"name": text, **overall[key], "folds": [by_fold.get((f, key)) for f in folds]}
            for key, text in record["strategies"].items()
            if key in overall
        ],
        "folds": folds,
        "vs_perfect": record["vs_perfect"].get("overall"),
        "other_capacity": record["policy"]["capacity"] != policy.capacity,
        "flip_rate": record["flip_rate"],
    }


def label(tier: str) -> str:
    """'high_touch' -> 'high touch'."""
    return str(tier).replace("_", " ")


def money(value) -> str:
    """ARR as people say it: 950, 12.3k, 1.25M (the currency is whatever the ARR column is in)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    value = float(value)
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:,.{2 if suffix == 'M' else 1}f}{suffix}"
    return f"{value:,.0f}"


def pct(value, digits: int = 0) -> str:
    """A probability as a percentage."""
    return "–" if value is None or pd.isna(value) else f"{float(value):.{digits}%}"


def day(value) -> str:
    """A date as YYYY-MM-DD ('' when missing)."""
    if value is None or pd.isna(value):
        return ""
    return pd.Timestamp(value).date().isoformat()
