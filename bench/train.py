"""Training benchmark: tierwise's final-model stage against plain `lightgbm.train`, and `tierwise train` end to end.

1. 1,000,000 snapshot rows x 60 features (55 numeric, 5 categorical): tierwise's final fit
   (`training.model.fit` + Platt calibration + `ModelBundle.save`) as a ratio to a plain
   `lightgbm.train` with the same parameters and rounds on the same matrix, in the same run.
   Target: ratio <= 1.5. The backtest folds are excluded (they are several fits by design).
2. End to end: `tierwise train` (subprocess, fresh MLflow store) on a demo world of N accounts.

    .venv/bin/python bench/train.py [--rows 1000000] [--rounds 300] [--repeat 2] [--accounts 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # as a script, bench/ comes first and bench/features.py would shadow the package
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from features.bundle import ModelBundle  # noqa: E402
from features.metrics import MetricSet  # noqa: E402
from training import calibration, model  # noqa: E402


def matrix(rows: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A churn-like matrix: 55 skewed numeric features, 5 categorical, a 7% positive rate."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.lognormal(0, 1, (rows, 55)), columns=[f"num_{i}" for i in range(55)])
    for i in range(5):
        X[f"cat_{i}"] = pd.Categorical.from_codes(rng.integers(0, 6 + i, rows), [f"c{j}" for j in range(6 + i)])
    logit = -3 + 0.6 * np.log(X["num_0"]) - 0.5 * np.log(X["num_1"]) + 0.3 * (X["cat_0"].cat.codes == 2)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def tierwise_final_stage(X: pd.DataFrame, y: np.ndarray, rounds: int, folder: Path) -> float:
    """Seconds for what `tierwise train` does after the backtest: fit, calibrate, bundle, save."""
    start = time.perf_counter()
    booster = model.fit(X, y, model.params_for(0), rounds)
    margin = booster.predict(X.iloc[:50_000], raw_score=True)  # stands in for the backtest's out-of-time margins
    cal = calibration.platt(margin, y[:50_000])
    cats = {c: list(X[c].cat.categories) for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)}
    names = list(X.columns)
    ident = {c: c for c in names}
    ModelBundle("churn", booster, names, cats, cal, MetricSet((), ()), ident, ident, dict.fromkeys(names, True)).save(
        folder
    )
    return time.perf_counter() - start


def plain_lightgbm(X: pd.DataFrame, y: np.ndarray, rounds: int) -> float:
    """Seconds for plain `lightgbm.train`, same parameters, same matrix."""
    start = time.perf_counter()
    lgb.train(model.params_for(0), lgb.Dataset(X, label=y), num_boost_round=rounds)
    return time.perf_counter() - start


def end_to_end(accounts: int, timeout: int) -> dict:
    """Seconds to write a demo world and to run `tierwise train` on it (fresh MLflow store)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "TIERWISE_MLRUNS": str(tmp)}
        cli = [sys.executable, "-m", "tierwise"]
        start = time.perf_counter()
        subprocess.run(
            [*cli, "demo-data", "--out", str(tmp / "data"), "--accounts", str(accounts)], check=True, env=env
        )
        generated = time.perf_counter()
        try:
            proc = subprocess.run([*cli, "train", "--data", str(tmp / "data")], env=env, timeout=timeout, cwd=ROOT)
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = f"did not finish within {timeout} s"
        return {"generate_s": generated - start, "train_s": time.perf_counter() - generated, "status": status}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2, help="timings per side; the best is reported")
    parser.add_argument("--accounts", type=int, default=10_000, help="demo world size for end to end (0: skip)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed for the end-to-end train")
    args = parser.parse_args()
    X, y = matrix(args.rows)
    print(
        f"matrix: {args.rows:,} rows x {X.shape[1]} features, {args.rounds} rounds, "
        f"{model.PARAMS['num_threads']} threads"
    )
    plain, ours = [], []
    for _ in range(args.repeat):  # interleaved, best of each: load on a shared machine hits both alike
        plain.append(plain_lightgbm(X, y, args.rounds))
        with tempfile.TemporaryDirectory() as tmp:
            ours.append(tierwise_final_stage(X, y, args.rounds, Path(tmp)))
    plain, ours = min(plain), min(ours)
    print(
        f"plain lightgbm.train: {plain:.1f} s; tierwise final stage: {ours:.1f} s; "
        f"ratio {ours / plain:.2f} (target <= 1.5)"
    )
    if args.accounts:
        e2e = end_to_end(args.accounts, args.timeout)
        print(
            f"end to end, {args.accounts:,} accounts: demo world {e2e['generate_s']:.0f} s, "
            f"tierwise train {e2e['train_s']:.0f} s ({e2e['status']})"
        )


if __name__ == "__main__":
    main()
