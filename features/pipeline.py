"""Features from a data folder to a file: the `tierwise features` job."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import Progress

from features.build import FeatureSet, build_features, metric_set_for
from features.io import write_table
from features.tables import DataError, Engine, Tables, load_tables


def check_as_of(as_of: date, data_end: pd.Timestamp) -> None:
    """Refuse an as-of date after the data ends: every account would look inactive, hence at risk."""
    if pd.Timestamp(as_of) > data_end:
        raise DataError(
            f"--as-of {as_of} is after the data ends ({data_end.date()} is the day after the last event): "
            "features would see no recent activity; use an as-of date on or before that day"
        )


def features_to_file(
    data_dir: Path,
    as_of_dates: list,
    out: Path,
    metrics_yaml: Path | None = None,
    console: Console | None = None,
    engine: Engine | None = None,
) -> tuple[Path, int]:
    """Load and validate the tables, build features for the dates, write them atomically.

    `metrics_yaml` replaces the shipped `features/metrics.yaml`; what loading cleaned and which
    account attributes were excluded are printed to `console` as warnings. `engine` picks what
    reads the events and computes the window metrics (default numpy; the output is the same).
    """
    console = console or Console(stderr=True)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("loading tables", total=2)
        tables = load_tables(data_dir, engine)
        for as_of in as_of_dates:
            check_as_of(as_of, tables.data_end)
        progress.update(task, advance=1, description="building features")
        features = build_features(tables, as_of_dates, metric_set_for(tables, metrics_yaml))
        progress.update(task, advance=1)
    print_warnings(console, data_warnings(tables, features))
    if features.frame.empty:
        raise DataError(f"no account is active on {', '.join(map(str, as_of_dates))}: no term in force those days")
    return write_table(features.frame, out), len(features.frame)


def data_warnings(tables: Tables, features: FeatureSet | None = None) -> list[str]:
    """What loading dropped from the tables and, when a screen ran, which attributes it excluded."""
    screen = features.attribute_screen if features is not None else None
    return tables.quality.warnings() + (screen.warnings() if screen is not None else [])


def print_warnings(console: Console, lines: list[str]) -> None:
    """One yellow line per warning: a data scientist must see what was cleaned before trusting a model."""
    for line in lines:
        console.print(f"[yellow]warning:[/yellow] {line}", soft_wrap=True)
