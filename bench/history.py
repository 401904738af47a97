"""Reading one account's trend from a 10,000-account x 52-batch score history, against reading one whole batch.

    .venv/bin/python -m bench.history [--accounts 10000] [--batches 52]

The history is synthetic but shaped like the real thing: every column of the score output,
reason texts and a `reasons_json` of the real size (~2.5 KB a row), weekly as-of dates, the
model version changing along the way. Timed, each as the median of several reads:

- baseline: reading one whole batch file (what any reader of the history must at least do to
  show one batch);
- cold: `account_history` (every batch file's footer, then only the row group holding the
  account, all columns);
- warm: `HistoryReader.account` once the reader holds the trend columns in memory (what the
  console's account page does);
- one account's whole row (reasons included) in one batch: `HistoryReader.row`;
- the reader's first load (once per process and per new batch).

A ratio is baseline time / our time: above 1 means one account's whole trend costs less than
one batch.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.timing import median_seconds
from serving.history import HistoryReader, account_history, append_batch, batches, read_batch
from serving.scoring import GROWTH_REASONS, OUTPUT, REASONS

FAMILIES = [f"family_{i:02d}" for i in range(24)]
TIERS = np.array(["high_touch", "mid_touch", "tech_touch"])
SEGMENTS = np.array(["save", "grow", "onboard", "nurture"])
PERSONAS = np.array(["core-usage", "report-exported-led", "light-single-feature", "not_adopted"], dtype=object)
REPEATS = 15


def synthetic_batch(as_of, accounts: int, seed: int = 0, churn_version: str = "1") -> pd.DataFrame:
    """A score batch of `accounts` accounts as of `as_of`, with every column `tierwise score` writes.

    Risks drift a little from one seed to the next, so a history made of consecutive seeds has
    trends; texts are as long as real reasons.
    """
    rng = np.random.default_rng(seed)
    ids = np.array([f"ACC-{i:06d}" for i in range(accounts)], dtype=object)
    base = np.random.default_rng(0).beta(2, 8, accounts)  # each account's own level, the same every batch
    risk = np.clip(base + rng.normal(0, 0.03, accounts), 0, 1)
    growth = np.clip(rng.beta(2, 6, accounts), 0, 1)
    arr = np.round(np.random.default_rng(1).lognormal(10, 1, accounts), 0)
    as_of = pd.Timestamp(as_of)
    days = rng.integers(1, 365, accounts)
    texts = np.array(
        [f"{n} uses of feature {n % 7} in the last 30 days (+{n % 5}.{n % 9} pts risk)" for n in range(99)]
    )
    frame = {
        "account_id": ids,
        "as_of": np.full(accounts, as_of),
        "churn_risk": risk,
        "growth_potential": growth,
        "arr": arr,
        "renewal_date": as_of + pd.to_timedelta(days, unit="D"),
        "days_to_renewal": days.astype(float),
        "arr_at_risk": arr * risk,
        "expected_expansion": arr * growth * 0.2,
        "tier": TIERS[rng.integers(0, 3, accounts)],
        "previous_tier": TIERS[rng.integers(0, 3, accounts)],
        "pool": TIERS[rng.integers(0, 3, accounts)],
        "segment": SEGMENTS[rng.integers(0, 4, accounts)],
        "persona": PERSONAS[rng.integers(0, len(PERSONAS), accounts)],
        "play": np.full(accounts, None, dtype=object),
        "escalate": rng.random(accounts) < 0.05,
        "onboarding_overflow": np.zeros(accounts, dtype=bool),
        "insufficient_history": rng.random(accounts) < 0.02,
        "lifecycle_stage": np.full(accounts, "established", dtype=object),
    }
    for column in (*REASONS, *GROWTH_REASONS):
        frame[column] = texts[rng.integers(0, len(texts), accounts)]
    frame["adoption_gaps"] = np.full(accounts, None, dtype=object)
    frame["reasons_json"] = [reasons_json(rng) for _ in range(accounts)]
    frame["changes"] = np.full(accounts, "risk +1 pts: support tickets rose", dtype=object)
    frame["churn_model_version"] = np.full(accounts, churn_version, dtype=object)
    frame["growth_model_version"] = np.full(accounts, "1", dtype=object)
    return pd.DataFrame(frame)[OUTPUT]


def reasons_json(rng: np.random.Generator) -> str:
    """A `reasons_json` value of the real shape and size: five drivers per model and points per family."""
    drivers = [
        {"driver": f, "feature": f"{f}__count_30d", "text": f"{f} text " * 6, "points": 1.5, "value": 3.0}
        for f in FAMILIES[:5]
    ]
    points = dict(zip(FAMILIES, np.round(rng.normal(0, 1, len(FAMILIES)), 2).tolist(), strict=True))
    return json.dumps({"churn": drivers, "churn_families": points, "growth": drivers[:3], "growth_families": points})


def write_history(root: Path, accounts: int, weeks: int) -> list[pd.Timestamp]:
    """Publish `weeks` weekly batches of `accounts` accounts into `root`; the churn model changes halfway."""
    dates = list(pd.date_range("2025-12-01", periods=weeks, freq="7D"))
    for week, as_of in enumerate(dates):
        append_batch(synthetic_batch(as_of, accounts, seed=week, churn_version="1" if week < weeks // 2 else "2"), root)
    return dates


def run(accounts: int, weeks: int) -> dict:
    """Build the history in a temp folder and time the reads; returns the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "history"
        start = time.perf_counter()
        dates = write_history(root, accounts, weeks)
        write_s = time.perf_counter() - start
        size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
        picks = [f"ACC-{i:06d}" for i in np.random.default_rng(3).integers(0, accounts, REPEATS)]
        batch_s = median_seconds(lambda: read_batch(dates[-1], root), REPEATS)
        listing_s = median_seconds(lambda: batches(root), REPEATS)
        cold = iter(picks)
        cold_s = median_seconds(lambda: account_history(next(cold), root), REPEATS)
        start = time.perf_counter()
        reader = HistoryReader(root)
        reader.refresh()
        load_s = time.perf_counter() - start
        warm = iter(picks * 20)
        warm_s = median_seconds(lambda: reader.account(next(warm)), REPEATS * 20)
        rows = iter(picks)
        row_s = median_seconds(lambda: reader.row(next(rows), dates[-2]), REPEATS)
        trend = reader.account(picks[0])
        assert len(trend) == weeks and len(account_history(picks[0], root)) == weeks
        memory = reader.nbytes
        append_batch(synthetic_batch(dates[-1] + pd.Timedelta(days=7), accounts, seed=weeks), root)
        start = time.perf_counter()
        assert reader.refresh(force=True)
        reload_s = time.perf_counter() - start
        assert len(reader.account(picks[0])) == weeks + 1
    return {
        "accounts": accounts,
        "batches": weeks,
        "write_s": write_s,
        "size_mb": size / 1e6,
        "batch_ms": batch_s * 1e3,
        "listing_ms": listing_s * 1e3,
        "cold_ms": cold_s * 1e3,
        "warm_ms": warm_s * 1e3,
        "row_ms": row_s * 1e3,
        "load_s": load_s,
        "reload_s": reload_s,
        "memory_mb": memory / 1e6,
    }


def table(f: dict) -> str:
    """The figures as the Markdown rows docs/benchmarks.md records."""
    rows = [
        ("read one whole batch (baseline)", f"{f['batch_ms']:.1f} ms", "1.0"),
        ("one account, cold (`account_history`, all columns)", f"{f['cold_ms']:.1f} ms", ratio(f, "cold_ms")),
        ("one account, warm (`HistoryReader.account`)", f"{f['warm_ms']:.2f} ms", ratio(f, "warm_ms")),
        ("one account's whole row in one batch (`HistoryReader.row`)", f"{f['row_ms']:.1f} ms", ratio(f, "row_ms")),
        ("list the batches (`batches`)", f"{f['listing_ms']:.1f} ms", ratio(f, "listing_ms")),
    ]
    lines = ["| read | median | ratio (baseline / it) |", "| --- | ---: | ---: |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def ratio(f: dict, key: str) -> str:
    return f"{f['batch_ms'] / f[key]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=52)
    args = parser.parse_args()
    f = run(args.accounts, args.batches)
    print(table(f))
    print(
        f"history: {f['accounts']:,} accounts x {f['batches']} batches, {f['size_mb']:.0f} MB on disk, "
        f"written in {f['write_s']:.1f} s; reader first load {f['load_s']:.2f} s, {f['memory_mb']:.0f} MB in memory, "
        f"reload after one new batch {f['reload_s']:.2f} s; "
        f"{platform.processor() or platform.machine()}"
    )


if __name__ == "__main__":
    main()
