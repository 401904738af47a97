"""`tierwise` commands for the score history and the console's database; registered on the app in tierwise.cli.

`tierwise history` lists the published batches or prints one account's trend;
`tierwise console-user add|remove|list` manages who may sign in to the console;
`tierwise touches export` writes the touches CSMs recorded to a table.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from features.errors import DataError
from tierwise.cli import TableOut, app, console

users_app = typer.Typer(help="Manage who may sign in to the console (stored in the console database).")
touches_app = typer.Typer(help="The touches CSMs record in the console.")
app.add_typer(users_app, name="console-user")
app.add_typer(touches_app, name="touches")
stdout = Console(soft_wrap=True)  # listings go to stdout, so they can be piped; messages stay on stderr


@app.command("history")
def history_cmd(
    account: Annotated[str | None, typer.Option("--account", help="Print this account's trend instead.")] = None,
    superseded: Annotated[
        bool, typer.Option("--all", help="Also list batches a later publication of the same as-of date replaced.")
    ] = False,
) -> None:
    """List the published score batches (as-of, written at, accounts, model versions), or one account's trend.

    The history is `score_history/` beside the latest-scores store, or `TIERWISE_HISTORY`.
    """
    from serving.history import account_history, batches, empty_message, shown

    if account is not None:
        if not account.strip():
            raise DataError("--account: empty; give an account id")
        stdout.print(trend_table(account, account_history(account)))
        return
    listed = batches(superseded=superseded)
    if listed.empty:
        raise DataError(empty_message(None))
    table = Table(
        "as of",
        "written at (UTC)",
        "accounts",
        "churn model",
        "growth model",
        title=f"score history {escape(shown(None))}",
    )
    for row in listed.itertuples():
        written = row.written_at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            row.as_of.date().isoformat(),
            written + (" (superseded)" if row.superseded else ""),
            f"{row.accounts:,}",
            escape(row.churn_version),
            escape(row.growth_version),
        )
    stdout.print(table)


def trend_table(account: str, trend) -> Table:
    """One account's trend as a table: risk, potential, tier and the model versions of each batch."""
    table = Table(
        "as of", "churn risk", "growth potential", "tier", "segment", "churn/growth model", title=escape(account)
    )
    for row in trend.to_dict("records"):
        table.add_row(
            row["as_of"].date().isoformat(),
            f"{row['churn_risk']:.1%}",
            f"{row['growth_potential']:.1%}" if "growth_potential" in row else "",
            escape(str(row.get("tier", ""))),
            escape(str(row.get("segment", ""))),
            escape(f"v{row.get('churn_model_version')}/v{row.get('growth_model_version')}"),
        )
    return table


@users_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The user name to sign in with.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin, not a prompt.")
    ] = False,
) -> None:
    """Add a console user; the password is asked twice without echo (or read from stdin) and stored hashed."""
    from serving.console.db import ConsoleDB, check_password, check_user_name

    check_user_name(name)  # before the password is asked for
    if password_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    check_password(password)
    db = ConsoleDB()
    db.add_user(name, password)
    console.print(f"[green]console user {escape(name)!r} added[/green] to {escape(shown_db(db))}")


@users_app.command("remove")
def user_remove(name: Annotated[str, typer.Argument(help="The user name to remove.")]) -> None:
    """Remove a console user (the touches they recorded stay, with their name)."""
    from serving.console.db import ConsoleDB

    db = ConsoleDB()
    db.remove_user(name)
    console.print(f"[green]console user {escape(name)!r} removed[/green] from {escape(shown_db(db))}")


@users_app.command("list")
def user_list() -> None:
    """List the console users' names."""
    from serving.console.db import ConsoleDB

    for name in ConsoleDB().users():
        stdout.print(escape(name), highlight=False)


@touches_app.command("export")
def touches_export(out: TableOut) -> None:
    """Write every recorded touch (who, when, kind, outcome, note, risk and tier then) to CSV or Parquet."""
    from serving.console.db import ConsoleDB

    db = ConsoleDB()
    path = db.export(out)
    console.print(f"[green]{len(db.touches()):,} touches exported to {escape(str(path))}[/green]")


def shown_db(db) -> str:
    """The console database's URL as messages show it (no password)."""
    from tierwise.settings import redact_uri

    return redact_uri(db.url)
