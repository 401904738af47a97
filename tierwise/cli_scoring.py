"""`tierwise` commands for scoring; registered on the app defined in tierwise.cli."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.tables import DataError
from tierwise.cli import EngineName, OptionalDataDir, SparkMaster, TableOut, app, console, html_out, parse_date


@app.command("score")
def score(
    out: TableOut,
    data: OptionalDataDir = None,
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
            min=1,
            help="Score with this tierwise-churn version (table mode: tierwise-churn-table) instead of the champion.",
        ),
    ] = None,
    growth_version: Annotated[
        int | None, typer.Option(min=1, help="Score with this tierwise-growth version instead of the champion.")
    ] = None,
    table: Annotated[
        Path | None, typer.Option(help="Table mode: a flat feature table scored with the tierwise-churn-table model.")
    ] = None,
    id_col: Annotated[
        str | None,
        typer.Option("--id", help="Table mode: the id column to keep (default: the one the model was trained with)."),
    ] = None,
    publish: Annotated[
        bool | None,
        typer.Option(
            "--publish/--no-publish",
            help="Replace the scores the service serves, or not (default: only champion scores of the newest as-of).",
            show_default=False,
        ),
    ] = None,
    engine: EngineName = "numpy",
    spark_master: SparkMaster = None,
) -> None:
    """Score every account active on a date with the champion models: risk, potential, reasons, tiers."""
    from features.pipeline import print_warnings
    from features.tables import Engine
    from serving.batch import score_table, score_to_file

    choice = Engine(engine, spark_master)

    if table is not None:
        if choice.name != "numpy":
            raise DataError("--engine: table mode scores a flat table on one machine; use --data for Spark")
        if publish is not None:
            raise DataError("--publish/--no-publish: table mode has no latest-scores store to publish to")
        run = score_table(table, out, id_col, churn_version)
        id_used = run.scored.columns[0]
        console.print(f"[green]{len(run.scored):,} rows scored into {run.out}[/green] (id column {id_used})")
        return
    if data is None or as_of is None:
        raise DataError("score needs --data and --as-of (or --table for a flat feature table)")
    if id_col is not None:
        raise DataError("--id is for table mode (--table); event-table scores always key on account_id")
    run = score_to_file(
        data,
        parse_date(as_of),
        out,
        policy,
        previous,
        {"churn": churn_version, "growth": growth_version},
        publish,
        choice,
    )
    print_warnings(console, list(run.warnings))
    tiers = run.scored["tier"].value_counts().to_dict()
    console.print(
        f"[green]{len(run.scored):,} accounts scored as of {as_of} into {run.out}[/green]; "
        f"tiers {tiers}; escalate {int(run.scored['escalate'].sum())}"
    )
    for line in run.allocation.lines():
        console.print(line, soft_wrap=True)
    console.print(run.publication.sentence(), soft_wrap=True)


@app.command("report")
def report(
    scores: Annotated[Path, typer.Option("--scores", help="Scores file written by `tierwise score` (.csv/.parquet).")],
    out: Annotated[Path, typer.Option(help="The HTML page to write (.html).", callback=html_out)] = Path("report.html"),
    policy: Annotated[
        Path | None, typer.Option(help="The tier policy the scores were made with (default: shipped).")
    ] = None,
) -> None:
    """Write the CSM report: one self-contained HTML page of tiers, capacity, renewals, risk and reasons."""
    from serving.report import write_report

    console.print(f"[green]report written to {write_report(scores, out, policy)}[/green]")
