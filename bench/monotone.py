"""What the declared monotone constraints cost: the backtest with and without them, same snapshots, same folds.

For each data folder and target, the rolling-origin backtest `tierwise train` runs is repeated with the
default parameters (no constraint), with `monotone_constraints` from the declared directions (LightGBM's
default "basic" method) and with the less restrictive "intermediate" method. It prints pooled out-of-time
ROC AUC and PR AUC, the change against no constraint, and the backtest's wall time; `training.model.MONOTONE`
is set from these figures (a target is constrained where the cost is at most 0.005 ROC AUC on every world).
It also fits the final model of each variant and explains the latest snapshot: the share of accounts
whose five largest churn (or growth) drivers hold one that contradicts its declared direction, i.e. a
reason `serving.reasons` has to withhold.

    .venv/bin/python bench/monotone.py DATA_DIR [DATA_DIR ...] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # as a script, bench/ comes first and bench/features.py would shadow the package
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from features.bundle import ModelBundle  # noqa: E402
from features.metrics import HEALTH_EFFECT  # noqa: E402
from features.tables import load_tables  # noqa: E402
from serving import reasons  # noqa: E402
from training import model  # noqa: E402
from training.backtest import run_backtest  # noqa: E402
from training.snapshots import TARGETS, snapshots  # noqa: E402

MAX_COST = 0.005  # ROC AUC a constraint may cost and still be used


def variants(features: list[str], directions: dict[str, int], target: str, seed: int) -> dict[str, dict]:
    """Parameter sets compared: none, basic constraints, intermediate constraints."""
    base = model.params_for(seed)
    constraints = [HEALTH_EFFECT[target] * directions.get(n, 0) for n in features]
    basic = base | {"monotone_constraints": constraints}
    return {"none": base, "basic": basic, "intermediate": basic | {"monotone_constraints_method": "intermediate"}}


def withheld_share(snap, target: str, params: dict, rounds: int) -> float:
    """Share of the latest snapshot's accounts with a contradicting driver among their five largest."""
    fs, frame = snap.features, snap.frame
    X = fs.matrix
    booster = model.fit(X, frame[target].to_numpy(dtype=int), params, rounds)
    bundle = ModelBundle(
        target,
        booster,
        list(fs.names),
        {c: [str(v) for v in X[c].cat.categories] for c in fs.categorical},
        {"a": 1.0, "b": 0.0},
        fs.metrics,
        fs.descriptions,
        fs.families,
        fs.actionable,
        directions=fs.directions,
        typical=model.typical_values(X, fs.directions, fs.metrics.recency),
    )
    latest = frame[frame["as_of"] == frame["as_of"].max()]
    A = bundle.array(latest)
    _, family_points, shown = reasons.grouped(bundle, 100 * bundle.contributions(A)[0])
    top = np.argsort(-np.abs(family_points), axis=1)[:, : reasons.TOP]
    rows = np.arange(len(A))[:, None]
    contradicts = reasons.contradictions(bundle, A, shown, family_points)[rows, top]
    return float((contradicts & (np.abs(family_points[rows, top]) >= reasons.MIN_POINTS)).any(axis=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=["none", "basic", "intermediate"])
    args = parser.parse_args()
    print(
        "| world | target | constraints | declared features | ROC AUC | change | PR AUC | change | backtest s "
        "| accounts with a withheld driver |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for folder in args.data:
        snap = snapshots(load_tables(folder))
        fs, frame = snap.features, snap.frame
        declared = sum(1 for n in fs.names if fs.directions.get(n, 0))
        for target in TARGETS:
            plain = None
            for name, params in variants(fs.names, fs.directions, target, args.seed).items():
                if name not in args.methods:
                    continue
                start = time.perf_counter()
                bt = run_backtest(
                    frame, fs.matrix, target, fs.categorical, snap.window_days, params, folds=snap.folds()
                )
                seconds = time.perf_counter() - start
                got = bt.overall["lightgbm"]
                plain = plain or got
                print(
                    f"| {folder.name} | {target} | {name} | {declared if name != 'none' else 0} | "
                    f"{got['roc_auc']:.4f} | {got['roc_auc'] - plain['roc_auc']:+.4f} | {got['pr_auc']:.4f} | "
                    f"{got['pr_auc'] - plain['pr_auc']:+.4f} | {seconds:.0f} | "
                    f"{withheld_share(snap, target, params, bt.final_rounds):.1%} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
