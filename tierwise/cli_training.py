"""`tierwise` commands for training; registered on the app defined in tierwise.cli."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from features.errors import DataError
from tierwise.cli import EngineName, MetricsFile, OptionalDataDir, Seed, SparkMaster, app, console, parse_date

MAX_HORIZON_DAYS = 3650  # ten years: beyond it no export holds a single label window


@app.command("train")
def train_cmd(
    data: OptionalDataDir = None,
    horizon_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_HORIZON_DAYS,
            help="Label horizon: churn or growth within this many days (e.g. 30 for monthly plans). Default: 90, "
            "or the longest (at least 28) that an honest backtest of a shorter history fits.",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Last snapshot date YYYY-MM-DD (default: data end minus the horizon and the churn grace)."),
    ] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "tierwise",
    tune: Annotated[
        int, typer.Option(min=0, help="Optuna trials per model, inside the training folds (0: defaults).")
    ] = 0,
    seed: Seed = 0,
    capacity: Annotated[
        int | None,
        typer.Option(min=1, help="K accounts the team covers (high-touch capacity); default 10% of accounts in force."),
    ] = None,
    table: Annotated[
        Path | None, typer.Option("--table", help="Flat one-row-per-account table (CSV/Parquet) instead of --data.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Table mode: the churn column (yes/no, true/false, 1/0).")] = None,
    id_col: Annotated[
        str | None, typer.Option("--id", help="Table mode: the account id column (the model remembers it for scoring).")
    ] = None,
    metrics: MetricsFile = None,
    churn_grace_days: Annotated[
        int, typer.Option(help="A new term starting at most this many days after the old one ended is not churn.")
    ] = 14,
    growth_min_increase: Annotated[
        float, typer.Option(help="Growth needs ARR up by at least this share over the horizon (0.10 = 10%).")
    ] = 0.10,
    policy: Annotated[
        Path | None, typer.Option(help="The team's tier policy YAML, replayed on the backtest (default: shipped).")
    ] = None,
    engine: EngineName = "numpy",
    spark_master: SparkMaster = None,
) -> None:
    """Train, backtest, log and register the churn and growth models (or a churn model from a flat table)."""
    if (data is None) == (table is None):
        raise DataError("give either --data DIR (event tables) or --table FILE --target COL --id COL")
    if table is not None:
        if metrics is not None:
            raise DataError("--metrics declares event metrics: give it with --data, not with --table")
        if not target or not id_col:
            raise DataError("--table needs --target COL (the churn column) and --id COL (the account id)")
        from training.table_mode import train_table

        train_table(table, target, id_col, experiment=experiment, seed=seed, capacity=capacity, console=console)
        return
    from features.subscriptions import LabelRules
    from features.tables import Engine

    choice = Engine(engine, spark_master)  # a bad engine is refused before the slow imports
    rules = LabelRules(churn_grace_days, growth_min_increase)  # bad rules are refused before the slow imports
    as_of_date = parse_date(as_of) if as_of else None
    from training.pipeline import train

    train(
        data,
        horizon_days,
        as_of_date,
        experiment,
        tune,
        seed,
        console,
        capacity=capacity,
        metrics_yaml=metrics,
        label_rules=rules,
        policy=policy,
        engine=choice,
    )


@app.command("promote")
def promote_cmd(
    target: Annotated[str, typer.Option(help="churn, growth or churn-table.")],
    version: Annotated[str, typer.Option(help="Registered model version to make champion.")],
) -> None:
    """Move the `champion` alias to a version by hand."""
    from training.registry import promote

    name = promote(target, version)
    console.print(f"[green]{name} version {version} is now champion[/green]")


@app.command("ui")
def ui_cmd(port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 5000) -> None:
    """Start the MLflow UI on the tracking store tierwise uses."""
    from tierwise import settings

    uri = settings.tracking_uri()
    if uri.startswith(("http://", "https://")):  # a tracking server is its own UI
        console.print(f"the tracking store is a server with its own UI: open {settings.tracking_store()}")
        return
    console.print(f"MLflow UI on http://127.0.0.1:{port} for {settings.redact_uri(uri)}")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", settings.artifact_root()]
    raise typer.Exit(subprocess.call(cmd))
