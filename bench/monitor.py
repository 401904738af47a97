"""A full `tierwise monitor` run on 10,000 accounts and 52 weekly batches, against one read of the history.

    .venv/bin/python -m bench.monitor [--accounts 10000] [--batches 52] [--write-docs]

Baseline: reading every batch of the score history once (`serving.history.read_batch` per batch), the
least any monitor must do. Ours: `monitoring.monitor.run_monitor` end to end: loading and validating the
tables, that same read, the labels of every batch whose horizon has passed, realised figures and the
degraded rule, estimates, the features of the newest batch and their drift, and the freshness checks.
The ratio is ours / baseline (how many history reads a monitor run costs). The model is trained on a
smaller world of the same simulator (its quality is not what is measured); the 10,000-account world is
scored weekly, each batch appended to a fresh history, in a temporary MLflow store.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.docs import replace_section
from bench.timing import best_of

REPEATS = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=52)
    parser.add_argument("--train-accounts", type=int, default=1500, help="accounts in the world the model learns on")
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/benchmarks.md")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        os.environ["TIERWISE_MLRUNS"] = str(tmp)
        report = run(tmp, args)
    print(report)
    if args.write_docs:
        write_section(report, args)


def run(tmp: Path, args) -> str:
    """Train, score the weekly batches into a history, then time one read of it against a monitor run."""
    from features.build import build_features
    from features.demo_world import write_demo_world
    from features.tables import load_tables
    from monitoring.monitor import run_monitor
    from serving.history import append_batch, batches, read_batch
    from serving.registry import load_models
    from serving.scoring import score_frame
    from training.pipeline import train

    write_demo_world(tmp / "train", n_accounts=args.train_accounts, seed=11)
    train(tmp / "train", seed=0, max_rounds=200)
    write_demo_world(tmp / "book", n_accounts=args.accounts, seed=12)
    tables = load_tables(tmp / "book")
    dates = pd.date_range(end=tables.data_end - pd.Timedelta(days=1), periods=args.batches, freq="W-MON")
    models = load_models()
    frame = build_features(tables, dates, metrics=models.churn.metrics).frame
    history = tmp / "history"
    for _, rows in frame.groupby("as_of"):
        append_batch(score_frame(rows.reset_index(drop=True), models, reasons=False), history)
    del frame, tables

    def read_all() -> int:
        return sum(len(read_batch(d, history)) for d in batches(history)["as_of"])

    rows = read_all()
    read_s = best_of(read_all, REPEATS)
    started = time.perf_counter()
    result = run_monitor(tmp / "book", history)
    monitor_s = time.perf_counter() - started
    judged = sum(len(v.realised) for v in result.versions)
    return (
        f"{args.accounts:,} accounts, {result.batches} weekly batches ({rows:,} scored rows; {judged} with outcomes, "
        f"{len(result.estimates)} estimated), data to {result.data_end}.\n\n"
        "| step | seconds | ratio to one history read |\n| --- | ---: | ---: |\n"
        f"| one read of the history (every batch, `read_batch`; best of {REPEATS}) | {read_s:.1f} | 1.0 |\n"
        f"| full monitor run (`run_monitor`) | {monitor_s:.1f} | **{monitor_s / read_s:.1f}** |\n"
    )


def write_section(report: str, args) -> None:
    """Replace (or append) the `## Monitoring` section of docs/benchmarks.md, leaving other sections alone."""
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    section = (
        "## Monitoring\n\n"
        f"Command: `.venv/bin/python -m bench.monitor --accounts {args.accounts} --batches {args.batches} "
        f"--write-docs` ({machine}).\n\n"
        "A full `tierwise monitor` run (`monitoring.monitor.run_monitor`: load and validate the tables, read "
        "every batch, label the batches whose horizon has passed, realised figures and the degraded rule, "
        "estimates, the newest batch's features and drift, freshness) against one read of the score history.\n\n"
        f"{report}\n"
    )
    replace_section("Monitoring", section)


if __name__ == "__main__":
    main()
