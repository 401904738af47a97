"""`tierwise` commands for scoring; registered on the app defined in tierwise.cli."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.tables import DataError
from tierwise.cli import app, console, parse_date


@app.command("score")
def score(
    out: Annotated[Path, typer.Option(help="Output file (.csv or .parquet).")],
    data: Annotated[
        Path | None, typer.Option("--data", help="Folder with accounts, subscriptions and events (CSV or Parquet).")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Score the accounts active on this date (YYYY-MM-DD).")
    ] = None,
    policy: Annotated[Path | None, typer.Option(help="Tier policy YAML (default: serving/tiers.yaml).")] = None,
    previous: Annotated[
        Path | None, typer.Option(help="Last run's output: keeps tiers stable and says what changed.")
    ] = None,
    churn_version: Annotated[
        int | None,
        typer.Option(
            help="Score with this tierwise-churn version (table mode: tierwise-churn-table) instead of the champion."
        ),
    ] = None,
    growth_version: Annotated[
        int | None, typer.Option(help="Score with this tierwise-growth version instead of the champion.")
    ] = None,
    table: Annotated[
        Path | None, typer.Option(help="Table mode: a flat feature table scored with the tierwise-churn-table model.")
    ] = None,
    id_col: Annotated[str, typer.Option("--id", help="Table mode: the id column to keep.")] = "account_id",
) -> None:
    """Score every account active on a date with the champion models: risk, potential, reasons, tiers."""
    from serving.batch import score_table, score_to_file

    if table is not None:
        run = score_table(table, out, id_col, churn_version)
        console.print(f"[green]{len(run.scored):,} rows scored into {run.out}[/green]")
        return
    if data is None or as_of is None:
        raise DataError("score needs --data and --as-of (or --table for a flat feature table)")
    run = score_to_file(
        data,
        parse_date(as_of),
        out,
        policy,
        previous,
        {"churn": churn_version, "growth": growth_version},
    )
    tiers = run.scored["tier"].value_counts().to_dict()
    console.print(
        f"[green]{len(run.scored):,} accounts scored as of {as_of} into {run.out}[/green]; "
        f"latest-scores store {run.store}; tiers {tiers}; escalate {int(run.scored['escalate'].sum())}"
    )
    for line in run.allocation.lines():
        console.print(line, soft_wrap=True)


@app.command("report")
def report(
    scores: Annotated[Path, typer.Option("--scores", help="Scores file written by `tierwise score` (.csv/.parquet).")],
    out: Annotated[Path, typer.Option(help="The HTML page to write.")] = Path("report.html"),
    policy: Annotated[
        Path | None, typer.Option(help="The tier policy the scores were made with (default: shipped).")
    ] = None,
) -> None:
    """Write the CSM report: one self-contained HTML page of tiers, capacity, renewals, risk and reasons."""
    from serving.report import write_report

    console.print(f"[green]report written to {write_report(scores, out, policy)}[/green]")
