"""`tierwise monitor`; registered on the app defined in tierwise.cli."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.io import output_file
from tierwise.cli import DataDir, app, console, html_out

ALARM_EXIT = 1  # a --fail-on condition holds (2 stays "bad input")


def page_out(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Option callback: an optional page path (.html), checked before any work."""
    return value if value is None else html_out(param, value)


def json_out(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Option callback: a JSON output path that can be written, checked before any work."""
    return value if value is None else output_file(value, (".json",), param.opts[0])


def conditions(value: str | None) -> list[str]:
    """Option callback: a comma-separated subset of the monitoring conditions."""
    from monitoring.monitor import CONDITIONS

    names = [part.strip() for part in (value or "").split(",") if part.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        raise typer.BadParameter(f"{', '.join(unknown)}: use any of {', '.join(CONDITIONS)}")
    return names


@app.command("monitor")
def monitor(
    data: DataDir,
    out: Annotated[Path | None, typer.Option(help="The monitoring page to write (.html).", callback=page_out)] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the summary for schedulers (.json).", callback=json_out)
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(help="Exit with code 1 when any of these holds: degraded,drift,stale.", callback=conditions),
    ] = None,
    history: Annotated[
        str | None, typer.Option(help="The score history (default: beside the latest-scores store; TIERWISE_HISTORY).")
    ] = None,
    silent_days: Annotated[
        int, typer.Option(min=1, help="An account with no event for this many days is silent.")
    ] = 30,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Log the figures to MLflow under each model version.")
    ] = True,
) -> None:
    """Realised against promised accuracy, estimates before outcomes land, drift and data freshness.

    The summary is also left beside the latest-scores store (`TIERWISE_MONITOR_SUMMARY` overrides), where
    the console's Monitoring page reads it: a run takes minutes, a page view must not.
    """
    from monitoring.monitor import MonitorConfig, log_monitoring, run_monitor, save_summary
    from monitoring.page import write_page
    from tierwise import settings

    result = run_monitor(data, history, MonitorConfig(silent_days=silent_days))
    console.print(f"latest summary for the console: {save_summary(result, settings.monitor_summary())}")
    if json_file is not None:
        console.print(f"summary written to {save_summary(result, json_file)}")
    if out is not None:
        console.print(f"page written to {write_page(result, out)}")
    if log:
        for version, run_id in log_monitoring(result).items():
            console.print(f"logged to MLflow: tierwise-churn v{version}, monitoring run {run_id}")
    for alarm in result.alarms:
        console.print(f"[bold red]{alarm.condition}[/bold red] {alarm.subject}: {alarm.evidence}", soft_wrap=True)
    if not result.alarms:
        console.print("[green]no alarm[/green]")
    for reason in result.retrain:
        console.print(f"retrain: {reason}", soft_wrap=True)
    held = [c for c in fail_on or [] if result.holds(c)]
    if held:
        console.print(f"[bold red]failing: {', '.join(held)}[/bold red]")
        raise typer.Exit(ALARM_EXIT)
