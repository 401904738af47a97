"""Which generic feature families earn their place: the out-of-time backtest with each one left out.

For each demo world (different size, history length and seed) the snapshots are built once with every
family of `features.metrics.FAMILIES` switched on; then, per target, the rolling-origin backtest that
`tierwise train` runs (same folds, late-slice early stopping, Platt calibration, refit, monotone
constraints from the declared directions) is repeated on column subsets: every family ("all"), no
generic family ("none": the per-event-type metrics, active users, contract and attributes), the shipped
default (`DEFAULT_FAMILIES` on top of "none") and all but one family at a time ("- breadth"). The
baselines are skipped: they do not depend on the families.
It prints a Markdown table: pooled out-of-time ROC AUC and PR AUC (mean over LightGBM seeds: one seed's
run-to-run noise is as large as most single families' effects), their change against "all", the folds
where leaving the family out lowered PR AUC, the feature count and the backtest's wall time.

A shorter history is an export that starts later: the events (and the contracts that ended before
they start) of the last `--months` months of the simulated book.

    .venv/bin/python bench/ablation.py [--seeds 0 1] [--worlds 1500:11:0 1000:23:15]

Results are cached per world, target, variant and LightGBM seed in bench/out/ablation/ (delete it to
measure again), so two processes with different `--seeds` can share the work and a third prints both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # as a script, bench/ comes first and bench/features.py would shadow the package
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from features.demo_world import simulate  # noqa: E402
from features.metrics import DEFAULT_FAMILIES, FAMILIES, default_metric_set  # noqa: E402
from features.tables import Tables, validate_tables  # noqa: E402
from training import model  # noqa: E402
from training.backtest import fold_model, late_slice  # noqa: E402
from training.evaluation import evaluate  # noqa: E402
from training.snapshots import TARGETS, Snapshots, snapshots  # noqa: E402

OUT = ROOT / "bench" / "out"
VARIANTS = ["all", "none", "shipped"] + [f"- {f}" for f in FAMILIES]


def world(accounts: int, seed: int, months: int) -> Tables:
    """A demo book; with `months` > 0 only its last `months` months of events (and the contracts still running)."""
    frames = dict(zip(("accounts", "subscriptions", "events"), simulate(accounts, seed), strict=True))
    if months:
        start = frames["events"]["timestamp"].max().normalize() - pd.DateOffset(months=months)
        frames["events"] = frames["events"][frames["events"]["timestamp"] >= start]
        frames["subscriptions"] = frames["subscriptions"][frames["subscriptions"]["end_date"] > start]
        frames["accounts"] = frames["accounts"][
            frames["accounts"]["account_id"].isin(frames["subscriptions"]["account_id"])
        ]
    return validate_tables(frames)


def every_family(tables: Tables) -> Snapshots:
    """Training snapshots with every generic family computed (the shipped declarations otherwise)."""
    event_types = sorted(tables.events["event"].unique())
    return snapshots(tables, metrics=default_metric_set(event_types, users=tables.has_users, families=tuple(FAMILIES)))


def variants(snap: Snapshots) -> dict[str, list[str]]:
    """Feature columns of each variant: all, none of the generic families, all but one."""
    fs = snap.features
    family_of = {n: fs.families.get(n) for n in fs.names}
    out = {"all": list(fs.names), "none": [n for n in fs.names if family_of[n] not in FAMILIES]}
    out["shipped"] = [n for n in fs.names if family_of[n] not in FAMILIES or family_of[n] in DEFAULT_FAMILIES]
    for family in FAMILIES:
        out[f"- {family}"] = [n for n in fs.names if family_of[n] != family]
    return out


def backtest(snap: Snapshots, names: list[str], target: str, seed: int) -> dict:
    """Pooled ROC AUC and PR AUC, PR AUC per fold and seconds of the training backtest's LightGBM on these columns."""
    frame, fs = snap.frame, snap.features
    X, y = fs.frame[names], frame[target].to_numpy(dtype=int)
    params = model.params_for(seed) | model.monotone_params(names, fs.directions, target)
    start = time.perf_counter()
    parts = []
    for fold in snap.folds():
        earlier, later = late_slice(frame["as_of"], fold.train, snap.window_days)
        _, p, _ = fold_model(X, y, fold, earlier, later, params, model.MAX_ROUNDS)
        parts.append(frame.loc[fold.valid, ["as_of", "arr"]].assign(y=y[fold.valid], p=p))
    seconds = time.perf_counter() - start
    pooled = evaluate(*(pd.concat(parts)[c] for c in ("y", "p", "arr", "as_of")))
    folds = [evaluate(p["y"], p["p"], p["arr"], p["as_of"])["pr_auc"] for p in parts]
    return {"roc_auc": pooled["roc_auc"], "pr_auc": pooled["pr_auc"], "folds": folds, "seconds": seconds}


def results(spec: str, seeds: list[int]) -> tuple[str, dict]:
    """(world's name, {(target, variant): [result per seed]}), each result cached under bench/out/ablation/."""
    cache = OUT / "ablation" / f"{spec.replace(':', '-')}.json"
    cache.parent.mkdir(parents=True, exist_ok=True)

    def stored() -> dict:
        return json.loads(cache.read_text()) if cache.exists() else {}

    done = stored()
    accounts, seed, months = map(int, spec.split(":"))
    snap = None
    for target in TARGETS:
        for s in seeds:
            if all(f"{target} {variant} {s}" in done for variant in VARIANTS):
                continue
            snap = snap or every_family(world(accounts, seed, months))
            done["name"] = (
                f"{accounts} accounts, seed {seed}, {f'last {months} months' if months else 'full history'} "
                f"({snap.cadence.name}, {snap.frame['as_of'].nunique()} dates, {len(snap.frame):,} rows)"
            )
            for variant, names in variants(snap).items():
                if f"{target} {variant} {s}" not in done:
                    done[f"{target} {variant} {s}"] = backtest(snap, names, target, s) | {"features": len(names)}
            done = stored() | done  # after each target and seed, merged: a second process may fill other seeds
            cache.with_suffix(".tmp").write_text(json.dumps(done))
            cache.with_suffix(".tmp").replace(cache)
    return done["name"], done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="LightGBM seeds to average over")
    parser.add_argument(
        "--worlds", nargs="+", default=["1500:11:0", "1000:23:15"], help="ACCOUNTS:SEED:MONTHS (0: full history)"
    )
    args = parser.parse_args()
    print(
        "| world | target | features | ROC AUC | change | PR AUC | change | folds (x seeds) where leaving it out "
        "lowered PR AUC | backtest s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with threadpool_limits(1, user_api="blas"):
        for spec in args.worlds:
            name, done = results(spec, args.seeds)
            for target in TARGETS:
                full = [done[f"{target} all {s}"] for s in args.seeds]
                for variant in VARIANTS:
                    got = [done[f"{target} {variant} {s}"] for s in args.seeds]
                    roc, pr, full_roc, full_pr = (
                        float(np.mean([r[m] for r in rows])) for rows in (got, full) for m in ("roc_auc", "pr_auc")
                    )
                    folds = [
                        (g, f)
                        for r, a in zip(got, full, strict=True)
                        for g, f in zip(r["folds"], a["folds"], strict=True)
                    ]
                    lower = f"{sum(g < f for g, f in folds)} of {len(folds)}" if variant != "all" else ""
                    print(
                        f"| {name} | {target} | {variant} ({got[0]['features']}) | {roc:.4f} | {roc - full_roc:+.4f} | "
                        f"{pr:.4f} | {pr - full_pr:+.4f} | {lower} | {np.mean([r['seconds'] for r in got]):.0f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
