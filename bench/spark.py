"""Spark engine benchmark: features for 12 as-of dates and scoring with reasons, Spark local vs numpy, one run.

Both engines run in this process on the same world (generated once into a temp folder and kept):
features = load + validate + every metric for 12 monthly as-of dates; scoring = churn and growth
with reasons for every account in force on the last date, through `score_frame` (numpy) and
`score_frame_spark` (mapInPandas). The models are trained once on a small world of the same
generator (scoring cost depends on trees x rows, not on how many accounts trained them). Prints
the ratios Spark / numpy, the per-core throughput of each stage, and checks the outputs agree.

    .venv/bin/python bench/spark.py [--accounts 10000] [--seed 0] [--cores 2]

With `MLFLOW_TRACKING_URI` set, its champion models score instead (no training in the run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # as a script, bench/ comes first and this file would shadow the `features` package
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
TRAIN_ACCOUNTS = 400


def world(accounts: int, seed: int) -> Path:
    """The benchmark world, generated on the first run and reused after (it takes a minute to write)."""
    from features.demo_world import write_demo_world

    folder = Path(tempfile.gettempdir()) / "tierwise-bench-spark" / f"world-{accounts}-{seed}"
    if not (folder / "events.parquet").exists():
        write_demo_world(folder, n_accounts=accounts, seed=seed)
    return folder


def trained_models(seed: int):
    """The champions of `MLFLOW_TRACKING_URI` when it is set, else models trained on a small world into a temp store."""
    from serving.registry import load_models

    if os.environ.get("MLFLOW_TRACKING_URI"):
        return load_models()
    store = tempfile.mkdtemp(prefix="tierwise-bench-mlflow-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["TIERWISE_MLRUNS"] = store
    from training.pipeline import train

    train(world(TRAIN_ACCOUNTS, seed), seed=seed)
    return load_models()


def timed(label: str, fn, *args, **kw):
    """(result, seconds); each stage's time is printed as it ends, so a run stopped early still says what ran."""
    start = time.perf_counter()
    out = fn(*args, **kw)
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return out, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=2, help="Spark local[N] and the cores its throughput is per")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd

    from features.build import build_features
    from features.spark_engine import spark_session
    from features.tables import Engine, load_tables
    from serving.scoring import score_frame
    from serving.spark_scoring import score_frame_spark

    data = world(args.accounts, args.seed)
    models, train_s = timed("train", trained_models, args.seed)
    master = f"local[{args.cores}]"
    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--driver-memory 6g pyspark-shell")  # local mode: all in the driver
    spark, start_s = timed("spark start", spark_session, master)
    spark.conf.set("spark.sql.shuffle.partitions", str(4 * args.cores))

    local, local_load = timed("numpy load", load_tables, data)
    events = local.quality.event_rows
    dates = pd.date_range(end=local.data_end, periods=12, freq="MS")
    metrics = models.churn.metrics
    local_features, local_build = timed("numpy features", build_features, local, dates, metrics)
    distributed, spark_load = timed("spark load", load_tables, data, Engine("spark", master))
    spark_features, spark_build = timed("spark features", build_features, distributed, dates, metrics)
    numbers = [c for c in local_features.names if pd.api.types.is_float_dtype(local_features.frame[c])]
    features_agree = np.allclose(
        spark_features.frame[numbers].to_numpy(float),
        local_features.frame[numbers].to_numpy(float),
        rtol=1e-9,
        atol=0,
        equal_nan=True,
    )

    last = local_features.frame[local_features.frame["as_of"] == dates[-1]].reset_index(drop=True)
    local_scores, local_score_s = timed("numpy scoring", score_frame, last, models)
    parts = 4 * args.cores
    spark_scores, spark_score_s = timed("spark scoring", score_frame_spark, last, models, spark, None, None, parts)
    scores_agree = spark_scores.equals(local_scores)

    rows = len(last)
    feature_rows = len(local_features.frame)
    numpy_features, spark_features_s = local_load + local_build, spark_load + spark_build
    print(
        f"world: {args.accounts:,} accounts, {events:,} events; {feature_rows:,} feature rows x "
        f"{len(local_features.names)} features for 12 as-of dates; {rows:,} accounts scored with reasons"
    )
    print(f"models: trained on {TRAIN_ACCOUNTS} accounts in {train_s:.0f} s; Spark {master} started in {start_s:.1f} s")
    threads = os.cpu_count() or 1  # LightGBM explains on every core; pandas and numpy work on one
    print(f"| stage | numpy s | Spark s | ratio Spark / numpy | numpy per core | Spark per core ({args.cores} cores) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    stages = [
        ("load + validate (events/s)", local_load, spark_load, events, 1),
        ("window metrics + features, 12 dates (events/s)", local_build, spark_build, events, 1),
        ("features total (events/s)", numpy_features, spark_features_s, events, 1),
        (f"scoring with reasons (accounts/s; numpy on {threads} threads)", local_score_s, spark_score_s, rows, threads),
    ]
    for name, a, b, n, cores in stages:
        print(f"| {name} | {a:.1f} | {b:.1f} | {b / a:.2f} | {n / (a * cores):,.0f} | {n / (b * args.cores):,.0f} |")
    print(f"parity: features {'equal' if features_agree else 'DIFFER'}, scores {'equal' if scores_agree else 'DIFFER'}")


if __name__ == "__main__":
    main()
