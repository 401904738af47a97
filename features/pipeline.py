"""Features from a data folder to a file: the `tierwise features` job."""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress

from features.build import build_features
from features.io import write_table
from features.metrics import DEFAULT_YAML, default_metric_set
from features.tables import load_tables


def features_to_file(
    data_dir: Path, as_of_dates: list, out: Path, metrics_yaml: Path | None = None
) -> tuple[Path, int]:
    """Load and validate the tables, build features for the dates, write them atomically."""
    with Progress(transient=True) as progress:
        task = progress.add_task("loading tables", total=2)
        tables = load_tables(data_dir)
        progress.update(task, advance=1, description="building features")
        metrics = default_metric_set(sorted(tables.events["event"].unique()), metrics_yaml or DEFAULT_YAML)
        features = build_features(tables, as_of_dates, metrics)
        progress.update(task, advance=1)
    return write_table(features.frame, out), len(features.frame)
