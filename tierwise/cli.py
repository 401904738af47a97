"""The `tierwise` command line: parses arguments and calls one function per command.

User errors (bad tables, bad policy, unknown model) end with one red line naming what is
wrong and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from features.errors import DataError

app = typer.Typer(help="Churn risk, growth potential and touch tiers for Customer Success.", no_args_is_help=True)
console = Console(stderr=True)

DataDir = Annotated[
    Path, typer.Option("--data", help="Folder with accounts, subscriptions and events (CSV or Parquet).")
]
MetricsFile = Annotated[
    Path | None,
    typer.Option(
        "--metrics",
        help="YAML of metric and attribute declarations that REPLACES the shipped features/metrics.yaml "
        "(copy that file to start); the metrics per event type are derived from your events either way.",
    ),
]


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option(help="Folder to write the demo tables into.")],
    accounts: Annotated[int, typer.Option(help="Number of accounts to simulate.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same world.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Write a simulated B2B SaaS book of accounts in the data contract."""
    from features.demo_world import write_demo_world

    counts = write_demo_world(out, n_accounts=accounts, seed=seed, fmt=fmt)
    console.print(f"[green]demo world written to {out}[/green]: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


@app.command("features")
def features_cmd(
    data: DataDir,
    as_of: Annotated[list[str], typer.Option("--as-of", help="As-of date YYYY-MM-DD; repeat for several.")],
    out: Annotated[Path, typer.Option(help="Output file (.csv or .parquet).")],
    metrics: MetricsFile = None,
) -> None:
    """Build point-in-time features for the accounts in force on each as-of date."""
    from features.pipeline import features_to_file

    path, rows = features_to_file(data, [parse_date(d) for d in as_of], out, metrics, console)
    console.print(f"[green]{rows:,} feature rows written to {path}[/green]")


def parse_date(text: str) -> date:
    """A YYYY-MM-DD date, or a user error naming the bad value."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise DataError(f"--as-of: {text!r} is not a date (use YYYY-MM-DD)") from exc


# Each area keeps its commands in its own module; importing them registers them on `app`.
from tierwise import cli_scoring, cli_service, cli_training  # noqa: E402, F401


def main() -> None:
    """Console entry point: runs the app and turns user errors into a clean message."""
    try:
        app()
    except DataError as exc:
        console.print(f"[bold red]error:[/bold red] {exc}", soft_wrap=True)  # one line, even when piped
        sys.exit(2)


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo world and every output.")] = Path("demo"),
    accounts: Annotated[int, typer.Option(help="Number of accounts to simulate.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run the main job end to end on a simulated book (what `make demo` runs)."""
    from tierwise.demo import run_demo

    run_demo(out, n_accounts=accounts, seed=seed, console=console)
