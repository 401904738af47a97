"""What the declared monotone constraints cost: the backtest with and without them, same snapshots, same folds.

For each data folder and target, the rolling-origin backtest `tierwise train` runs is repeated with the
default parameters (no constraint), with `monotone_constraints` from the declared directions (LightGBM's
default "basic" method) and with the less restrictive "intermediate" method. It prints pooled out-of-time
ROC AUC and PR AUC, the change against no constraint, and the backtest's wall time; `training.model.MONOTONE`
is set from these figures (a target is constrained where the cost is at most 0.005 ROC AUC on every world).

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

from features.tables import load_tables  # noqa: E402
from training import model  # noqa: E402
from training.backtest import run_backtest  # noqa: E402
from training.snapshots import TARGETS, snapshots  # noqa: E402

MAX_COST = 0.005  # ROC AUC a constraint may cost and still be used


def variants(features: list[str], directions: dict[str, int], target: str, seed: int) -> dict[str, dict]:
    """Parameter sets compared: none, basic constraints, intermediate constraints."""
    base = model.params_for(seed)
    constraints = [model.HEALTH_EFFECT[target] * directions.get(n, 0) for n in features]
    basic = base | {"monotone_constraints": constraints}
    return {"none": base, "basic": basic, "intermediate": basic | {"monotone_constraints_method": "intermediate"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| world | target | constraints | declared features | ROC AUC | change | PR AUC | change | backtest s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for folder in args.data:
        snap = snapshots(load_tables(folder))
        fs, frame = snap.features, snap.frame
        declared = sum(1 for n in fs.names if fs.directions.get(n, 0))
        for target in TARGETS:
            plain = None
            for name, params in variants(fs.names, fs.directions, target, args.seed).items():
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
                    f"{got['pr_auc'] - plain['pr_auc']:+.4f} | {seconds:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
