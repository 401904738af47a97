"""Features from a data folder to a file: the `tierwise features` job."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
from rich.progress import Progress

from features.build import build_features
from features.io import write_table
from features.metrics import DEFAULT_YAML, default_metric_set
from features.tables import DataError, load_tables


def check_as_of(as_of: date, data_end: pd.Timestamp) -> None:
    """Refuse an as-of date after the data ends: every account would look inactive, hence at risk."""
    if pd.Timestamp(as_of) > data_end:
        raise DataError(
            f"--as-of {as_of} is after the data ends ({data_end.date()} is the day after the last event): "
            "features would see no recent activity; use an as-of date on or before that day"
        )


def features_to_file(
    data_dir: Path, as_of_dates: list, out: Path, metrics_yaml: Path | None = None
) -> tuple[Path, int]:
    """Load and validate the tables, build features for the dates, write them atomically."""
    with Progress(transient=True) as progress:
        task = progress.add_task("loading tables", total=2)
        tables = load_tables(data_dir)
        for as_of in as_of_dates:
            check_as_of(as_of, tables.data_end)
        progress.update(task, advance=1, description="building features")
        metrics = default_metric_set(sorted(tables.events["event"].unique()), metrics_yaml or DEFAULT_YAML)
        features = build_features(tables, as_of_dates, metrics)
        progress.update(task, advance=1)
    if features.frame.empty:
        raise DataError(f"no account is active on {', '.join(map(str, as_of_dates))}: no term in force those days")
    return write_table(features.frame, out), len(features.frame)
