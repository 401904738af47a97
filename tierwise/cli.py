"""The `tierwise` command line: parses arguments and calls one function per command.

User errors (bad tables, bad policy, unknown model, a bad option value) end with one red line
naming what is wrong and exit code 2, never a traceback. Output paths are checked while the
arguments are parsed, so a wrong suffix is refused before any table or model is loaded.
"""

from __future__ import annotations

import os
import sys
import traceback
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from features.errors import DataError
from features.io import TABLE_SUFFIXES, output_file, output_folder
from tierwise.settings import redact_uri

try:  # typer 0.2x carries its own copy of click: its usage errors are these classes, not click's
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # older typer uses click itself
    from click.exceptions import ClickException, NoArgsIsHelpError

app = typer.Typer(help="Churn risk, growth potential and touch tiers for Customer Success.", no_args_is_help=True)
console = Console(stderr=True)

MAX_ACCOUNTS = 1_000_000  # a simulated book larger than this takes hours and tens of GB: not a demo
LIGHTGBM_SEED_MAX = 2**31 - 1  # LightGBM keeps its seed in a C int


def table_out(param: typer.CallbackParam, value: str | None) -> Path | str | None:
    """Option callback: an output table path (.csv or .parquet) that can be written, checked before any work."""
    return value if value is None else output_file(value, TABLE_SUFFIXES, param.opts[0])


def html_out(param: typer.CallbackParam, value: Path) -> Path:
    """Option callback: an output page path (.html) that can be written, checked before any work."""
    return output_file(value, (".html",), param.opts[0])


def folder_out(param: typer.CallbackParam, value: Path) -> Path:
    """Option callback: an output folder that can be written into, checked before any work."""
    return output_folder(value, param.opts[0])


def table_format(value: str) -> str:
    """Option callback: a table format tierwise writes."""
    if value not in ("parquet", "csv"):
        raise typer.BadParameter(f"{value!r}: use parquet or csv")
    return value


# Text, not Path: a Path would fold an object-storage URL's `s3://` into `s3:/`.
DATA_HELP = "Folder with accounts, subscriptions and events (CSV or Parquet), or its URL (s3://, gs://, ...)."
DataDir = Annotated[str, typer.Option("--data", help=DATA_HELP)]
OptionalDataDir = Annotated[str | None, typer.Option("--data", help=DATA_HELP)]
TableOut = Annotated[
    str, typer.Option(help="Output file (.csv or .parquet), or its URL (s3://...).", callback=table_out)
]
Seed = Annotated[
    int, typer.Option(min=0, max=LIGHTGBM_SEED_MAX, help="Random seed: the same seed gives the same result.")
]
EngineName = Annotated[
    str,
    typer.Option(
        "--engine",
        help="What reads the events and computes the window metrics: numpy (embedded, default) or spark "
        "(PySpark: local mode, --spark-master, or Spark Connect through SPARK_REMOTE). Same output.",
    ),
]
SparkMaster = Annotated[
    str | None,
    typer.Option(help="With --engine spark: Spark's master URL (default local[*]; e.g. spark://host:7077, yarn)."),
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
    out: Annotated[Path, typer.Option(help="Folder to write the demo tables into.", callback=folder_out)],
    accounts: Annotated[int, typer.Option(min=1, max=MAX_ACCOUNTS, help="Number of accounts to simulate.")] = 2000,
    seed: Seed = 0,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.", callback=table_format)] = "parquet",
    use_cases: Annotated[
        bool, typer.Option(help="Hidden use cases shape each account's event mix (truth in hidden_use_cases.csv).")
    ] = False,
) -> None:
    """Write a simulated B2B SaaS book of accounts in the data contract."""
    from features.demo_world import write_demo_world

    counts = write_demo_world(out, n_accounts=accounts, seed=seed, fmt=fmt, use_cases=use_cases)
    console.print(f"[green]demo world written to {out}[/green]: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


@app.command("features")
def features_cmd(
    data: DataDir,
    as_of: Annotated[list[str], typer.Option("--as-of", help="As-of date YYYY-MM-DD; repeat for several.")],
    out: TableOut,
    metrics: MetricsFile = None,
    engine: EngineName = "numpy",
    spark_master: SparkMaster = None,
) -> None:
    """Build point-in-time features for the accounts in force on each as-of date."""
    from features.pipeline import features_to_file
    from features.tables import Engine

    choice = Engine(engine, spark_master)
    path, rows = features_to_file(data, [parse_date(d) for d in as_of], out, metrics, console, choice)
    console.print(f"[green]{rows:,} feature rows written to {path}[/green]")


def parse_date(text: str) -> date:
    """A YYYY-MM-DD date, or a user error naming the bad value."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise DataError(f"--as-of: {text!r} is not a date (use YYYY-MM-DD)") from exc


# Each area keeps its commands in its own module; importing them registers them on `app`.
from tierwise import cli_console, cli_monitor, cli_scoring, cli_service, cli_training  # noqa: E402, F401


def main() -> None:
    """Console entry point: process-wide set-up, then the command; user errors become one clean line.

    OpenMP threads that spin while they wait made LightGBM up to 10x slower on a busy 2-core
    machine, and passive waiting costs nothing on an idle one. OpenMP reads the policy once,
    when LightGBM's library loads, so it is set here, before any command imports LightGBM;
    not when a package is imported, since importing must not change the process it runs in.
    Whatever starts the service without this entry point sets it too (bentofile.yaml `envs`).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # bars of a few ms clutter every error
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError:  # the help is already printed
        sys.exit(2)
    except ClickException as exc:  # a bad option value: one line, not typer's framed usage panel
        fail(f"{exc.format_message()} (see --help)", exc.exit_code)
    except DataError as exc:
        fail(str(exc), 2)
    except typer.Abort:
        fail("aborted", 1)
    except Exception as exc:  # a bug or an outage mid-run: the traceback stays for fixing it, never a password
        sys.stderr.write(redact_uri("".join(traceback.format_exception(exc))))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, code: int) -> None:
    """Print one red error line and exit with `code`: never wrapped, a message of several lines joined by `; `."""
    line = redact_uri("; ".join(part.strip() for part in message.splitlines() if part.strip()))
    console.print(f"[bold red]error:[/bold red] {escape(line)}", soft_wrap=True, highlight=False)
    sys.exit(code)


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo world and every output.", callback=folder_out)] = Path(
        "demo"
    ),
    accounts: Annotated[int, typer.Option(min=1, max=MAX_ACCOUNTS, help="Number of accounts to simulate.")] = 2000,
    seed: Seed = 0,
) -> None:
    """Run the main job end to end on a simulated book (what `make demo` runs)."""
    from tierwise.demo import run_demo

    run_demo(out, n_accounts=accounts, seed=seed, console=console)
