"""Feature engine benchmark: 12 monthly as-of dates on a >= 10,000-account, >= 10M-event world.

Prints the ratio of our time (load + validate + build features for all dates) to a floor measured
in the same run: one plain grouped count over the same events file with the same engine
(pandas read + groupby count). Each side runs in a fresh process so its peak RSS is its own.

    .venv/bin/python bench/features.py [--accounts 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path[0] = str(ROOT)  # as a script, bench/ comes first and this file would shadow the `features` package


def baseline(data: Path) -> None:
    """The floor: read the events once and count them per (account, event)."""
    import pandas as pd

    events = pd.read_parquet(data / "events.parquet")
    events.groupby(["account_id", "event"]).size()


def ours(data: Path) -> None:
    """The real path: validate all three tables, then every metric for 12 month-start dates."""
    import pandas as pd

    from features.build import build_features
    from features.tables import load_tables

    tables = load_tables(data)
    dates = pd.date_range(end=tables.data_end, periods=12, freq="MS")
    build_features(tables, dates)


def measure(kind: str, data: Path) -> dict:
    """Run one side in a child process; return its wall time and peak RSS."""
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--data", str(data)], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["baseline", "ours"])
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    if args.worker:
        start = time.perf_counter()
        (baseline if args.worker == "baseline" else ours)(args.data)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps({"seconds": seconds, "peak_rss_gib": peak}))
        return
    from features.demo_world import write_demo_world

    data = OUT / f"world-{args.accounts}-{args.seed}"
    if not (data / "events.parquet").exists():
        write_demo_world(data, n_accounts=args.accounts, seed=args.seed)
    import pandas as pd

    n_events = pd.read_parquet(data / "events.parquet", columns=["event"]).shape[0]
    floor, real = measure("baseline", data), measure("ours", data)
    print(f"world: {args.accounts:,} accounts, {n_events:,} events, 12 monthly as-of dates")
    print(f"floor (read + one grouped count): {floor['seconds']:.2f} s, peak RSS {floor['peak_rss_gib']:.2f} GiB")
    print(f"features (load + validate + all metrics): {real['seconds']:.2f} s, peak RSS {real['peak_rss_gib']:.2f} GiB")
    print(f"ratio features / floor: {real['seconds'] / floor['seconds']:.2f} (target <= 10; peak RSS target < 4 GiB)")


if __name__ == "__main__":
    main()
