"""`make demo`: the main job end to end on an embedded demo world."""

from __future__ import annotations

from pathlib import Path

from features.demo_world import write_demo_world
from rich.console import Console

from features.pipeline import features_to_file
from features.tables import load_tables


def run_demo(out: Path, n_accounts: int = 2000, seed: int = 0, console: Console | None = None) -> dict[str, Path]:
    """Generate the demo world, then run every stage on it; returns where each output is."""
    console = console or Console()
    data = out / "data"
    counts = write_demo_world(data, n_accounts=n_accounts, seed=seed)
    console.print(f"demo world: {data} ({', '.join(f'{k} {v:,}' for k, v in counts.items())})")
    as_of = load_tables(data).data_end
    features, rows = features_to_file(data, [as_of], out / "features.parquet")
    console.print(f"features as of {as_of.date()}: {features} ({rows:,} accounts)")
    return {"data": data, "features": features}
