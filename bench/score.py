"""Scoring throughput on 100,000 accounts against LightGBM itself, measured in the same run.

    .venv/bin/python -m bench.score [--accounts 100000] [--write-docs]

Baselines: raw `Booster.predict` on the models' matrices (for scoring without reasons) and raw
`Booster.predict(pred_contrib=True)` (for scoring with reasons: exact tree SHAP is the floor, so
any time beyond it is ours). Both models (churn and growth) are timed in both. A ratio is
baseline time / our time: 1.0 means no overhead, the target is >= 0.5.

The 100,000-row book is made cheaply: features of a small demo world, resampled with unique ids
and usage perturbed by up to +-30%, so the trees see varied rows rather than copies.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import tempfile
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from bench.docs import replace_section
from bench.timing import best_of
from features.build import build_features, build_snapshots, snapshot_dates
from features.bundle import ModelBundle
from features.demo_world import write_demo_world
from features.tables import load_tables
from serving.registry import Models
from serving.scoring import score_frame
from serving.tiers import HIGH, MID, load_policy

ROUNDS = 300
REPEATS = 3  # the SHAP paths take minutes per run at 100,000 rows, so they run once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--world", type=int, default=400, help="accounts in the demo world the rows are drawn from")
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/benchmarks.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        write_demo_world(Path(tmp), n_accounts=args.world, seed=11)
        tables = load_tables(tmp)
    models = trained_models(tables)
    book = resampled_book(build_features(tables, [tables.data_end], models.churn.metrics).frame, args.accounts)
    policy = book_policy(book)
    X = {name: bundle.matrix(book) for name, bundle in (("churn", models.churn), ("growth", models.growth))}
    boosters = (models.churn.booster, models.growth.booster)

    predict = best_of(lambda: [b.predict(X[b_name]) for b, b_name in zip(boosters, X, strict=True)], REPEATS)
    ours = best_of(lambda: score_frame(book, models, policy, reasons=False), REPEATS)
    contrib = best_of(lambda: [b.predict(X[n], pred_contrib=True) for b, n in zip(boosters, X, strict=True)], 1)
    ours_reasons = best_of(lambda: score_frame(book, models, policy, reasons=True), 1)

    rows = [
        ("scoring without reasons", "Booster.predict", predict, ours),
        ("scoring with reasons", "Booster.predict(pred_contrib=True)", contrib, ours_reasons),
    ]
    report = table(rows, len(book))
    print(report)
    if args.write_docs:
        write_section(report, args)


def trained_models(tables) -> Models:
    """Churn and growth bundles trained quickly on monthly snapshots of the demo world (calibrated in-sample)."""
    snaps = build_snapshots(tables, snapshot_dates(tables, window_days=90), 90)
    bundles = []
    for target in ("churn", "growth"):
        bundle = ModelBundle(
            target=target,
            booster=None,
            features=snaps.names,
            categories={c: [str(v) for v in snaps.frame[c].cat.categories] for c in snaps.categorical},
            calibration={"a": 1.0, "b": 0.0},
            metrics=snaps.metrics,
            descriptions=snaps.descriptions,
            families=snaps.families,
            actionable=snaps.actionable,
            info={"mean_uplift": 0.2},
        )
        X, y = bundle.matrix(snaps.frame), snaps.frame[target]
        params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20, "verbose": -1}
        bundle.booster = lgb.train(params, lgb.Dataset(X, y), ROUNDS)
        bundles.append(bundle)
    return Models(bundles[0], bundles[1], "bench", "bench")


def resampled_book(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """`n` feature rows drawn from `frame` with unique ids and usage counts perturbed by up to +-30%."""
    rng = np.random.default_rng(seed)
    book = frame.iloc[rng.integers(0, len(frame), n)].reset_index(drop=True)
    book["account_id"] = [f"B{i:07d}" for i in range(n)]
    usage = [c for c in book.columns if re.search(r"__(count|users|active_days)_", c)]
    book[usage] = (book[usage].to_numpy(float) * rng.uniform(0.7, 1.3, (n, len(usage)))).round()
    return book


def book_policy(book: pd.DataFrame):
    """The shipped policy with capacity scaled to a 100,000-account book (5% high touch, the onboarding + 10% mid)."""
    onboarding = int((book["lifecycle_stage"].astype(str) == "onboarding").sum())
    capacity = {HIGH: len(book) // 20, MID: onboarding + len(book) // 10}
    return dataclasses.replace(load_policy(), capacity=capacity)


def table(rows, n: int) -> str:
    """The figures as a Markdown table."""
    lines = [
        f"{n:,} accounts, churn + growth models ({ROUNDS} trees each); best of {REPEATS} runs without reasons, "
        "one run with reasons.",
        "",
        "| path | baseline | baseline s | ours s | accounts/s | ratio (baseline/ours) | target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, base_name, base, ours in rows:
        lines.append(
            f"| {name} | raw `{base_name}` | {base:.2f} | {ours:.2f} | {n / ours:,.0f} "
            f"| **{base / ours:.2f}** | >= 0.5 |"
        )
    return "\n".join(lines)


def write_section(report: str, args) -> None:
    """Replace (or append) the `## Scoring` section of docs/benchmarks.md, leaving other sections alone."""
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, LightGBM {lgb.__version__}"
    section = (
        "## Scoring\n\n"
        f"Command: `.venv/bin/python -m bench.score --accounts {args.accounts} --write-docs` ({machine}).\n\n"
        "The whole scoring path (`serving.scoring.score_frame`: parity-checked model arrays, calibrated "
        "probabilities, value at stake, capacity-aware tiers, and with reasons the SHAP drivers worded "
        "for CSMs plus `reasons_json`) against LightGBM alone on the same matrices.\n\n"
        f"{report}\n"
    )
    replace_section("Scoring", section)


if __name__ == "__main__":
    main()
