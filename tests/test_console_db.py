"""The console database on SQLite and on a real PostgreSQL: users, touches, export, bad input, the CLI."""

from __future__ import annotations

import io
import sys
from datetime import UTC, date, datetime, timedelta, timezone

import pandas as pd
import pytest
from argon2 import PasswordHasher, profiles
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from features.errors import DataError
from serving.console.db import MAX_NOTE, ConsoleDB, Touch
from tierwise.cli import app, main

PASSWORD = "correct horse battery"
HOSTILE = '=HYPERLINK("http://evil.example","click")'
# argon2-cffi's profile for tests: the shipped one costs ~50 ms a hash (seconds on a busy machine). The CLI
# and the hash-upgrade check hash with the shipped profile.
CHEAP = PasswordHasher.from_parameters(profiles.CHEAPEST)
SHIPPED = "$argon2id$v=19$m=65536,t=3,p=4$"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """An empty console database: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'console.db'}"
    return request.getfixturevalue("postgres").create_database(f"console_{abs(hash(str(tmp_path)))}")


def touch(**changes) -> Touch:
    """A valid touch, with `changes` applied."""
    fields = {"account_id": "ACC-1", "kind": "call", "touched_on": date(2026, 11, 20), "author": "ana"}
    return Touch(**(fields | changes))


def run_cli(args: list[str], monkeypatch, capsys, stdin: str = "") -> tuple[int, str]:
    """Run `tierwise ARGS` in-process through its entry point; (exit code, stdout + stderr)."""
    monkeypatch.setattr(sys, "argv", ["tierwise", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as done:
        main()
    said = capsys.readouterr()
    return done.value.code, " ".join((said.out + said.err).split())


def test_users_are_stored_hashed_verified_and_removed(url):
    db = ConsoleDB(url, CHEAP)
    db.add_user("ana", PASSWORD)
    db.add_user("bo.b@example", PASSWORD + "2")
    assert db.users() == ["ana", "bo.b@example"]
    assert db.verify("ana", PASSWORD) and not db.verify("ana", PASSWORD + "2") and not db.verify("ana", "")
    assert db.verify("bo.b@example", PASSWORD + "2") and not db.verify("nobody", PASSWORD)
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in stored_hashes(url))  # never the password
    with pytest.raises(DataError, match="console user 'ana' already exists"):
        db.add_user("ana", "another long password")
    assert ConsoleDB(url).verify("ana", PASSWORD)  # another process, with the shipped profile, sees the same users
    assert sum(h.startswith(SHIPPED) for h in stored_hashes(url)) == 1  # and upgraded ana's weaker hash
    db.remove_user("ana")
    assert db.users() == ["bo.b@example"] and not db.verify("ana", PASSWORD)
    with pytest.raises(DataError, match="console user 'ana' does not exist"):
        db.remove_user("ana")


def stored_hashes(url: str) -> list[str]:
    """The password column as the database holds it."""
    with create_engine(url).connect() as conn:
        return list(conn.execute(text("SELECT password_hash FROM console_users")).scalars())


def test_touches_round_trip_newest_first_and_export(url, tmp_path):
    db = ConsoleDB(url, CHEAP)
    at = datetime(2026, 11, 25, 9, 30, tzinfo=timezone(timedelta(hours=-5)))  # recorded in New York
    first = touch(
        outcome="renewal agreed", note=HOSTILE, risk_at_touch=0.42, tier_at_touch="high_touch", recorded_at=at
    )
    ids = [db.add_touch(first)]
    ids.append(db.add_touch(touch(kind="qbr", touched_on=date(2026, 11, 24), note="  agenda sent \n")))
    ids.append(db.add_touch(touch(account_id="ACC-2", kind="save_play", author="bo")))
    mine = db.touches("ACC-1")
    assert [t.id for t in mine] == [ids[1], ids[0]]  # newest touch date first
    assert mine[1].recorded_at == at and mine[1].recorded_at.tzinfo == UTC  # stored and returned in UTC
    assert (mine[1].note, mine[1].risk_at_touch, mine[1].tier_at_touch) == (HOSTILE, 0.42, "high_touch")
    assert (mine[0].note, mine[0].risk_at_touch, mine[0].tier_at_touch) == ("agenda sent", None, None)
    assert {t.account_id for t in db.touches()} == {"ACC-1", "ACC-2"} and db.touches("ACC-3") == []
    csv = pd.read_csv(db.export(tmp_path / "out" / "touches.csv"))
    assert csv["id"].tolist() == ids and csv["note"].iloc[0] == "'" + HOSTILE  # defused for spreadsheets
    parquet = pd.read_parquet(db.export(tmp_path / "touches.parquet"))
    assert parquet["note"].iloc[0] == HOSTILE and parquet["kind"].tolist() == ["call", "qbr", "save_play"]
    assert parquet["recorded_at"].iloc[0] == pd.Timestamp(at) and str(parquet["recorded_at"].dt.tz) == "UTC"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".db") == ["out", "touches.parquet"]


TODAY = datetime.now(UTC).date()
BAD_TOUCHES = [
    ({"kind": "visit"}, "kind 'visit': use one of call, email"),
    ({"account_id": "  "}, "account_id: empty"),
    ({"account_id": None}, "account_id: expected text"),
    ({"author": ""}, "author: empty"),
    ({"touched_on": TODAY + timedelta(days=3)}, "in the future"),
    ({"touched_on": "2026-02-30"}, "touched_on '2026-02-30': not a date"),
    ({"touched_on": date(1926, 1, 1)}, "before 2000-01-01"),
    ({"note": "x" * (MAX_NOTE + 1)}, f"note: too long ({MAX_NOTE + 1:,} characters"),
    ({"note": "a\x00b"}, "note: contains a NUL"),
    ({"outcome": 3}, "outcome: expected text"),
    ({"risk_at_touch": 1.5}, "risk_at_touch 1.5: a probability"),
    ({"risk_at_touch": float("nan")}, "risk_at_touch nan"),
    ({"recorded_at": "yesterday"}, "recorded_at 'yesterday': not a date and time"),
]


@pytest.mark.parametrize(("changes", "says"), BAD_TOUCHES, ids=[says.split(":")[0] for _, says in BAD_TOUCHES])
def test_a_bad_touch_is_refused_naming_the_field(changes, says, tmp_path):
    db = ConsoleDB(f"sqlite:///{tmp_path / 'console.db'}", CHEAP)
    with pytest.raises(DataError) as refused:
        db.add_touch(touch(**changes))
    assert says in str(refused.value) and isinstance(refused.value, ValueError)
    assert db.touches() == []  # nothing half-written


def test_bad_users_passwords_urls_and_exports_are_refused(tmp_path):
    db = ConsoleDB(f"sqlite:///{tmp_path / 'console.db'}", CHEAP)
    for name in ("", "has space", "-dash-first", "x" * 65, "semi;colon"):
        with pytest.raises(DataError, match="user name"):
            db.add_user(name, PASSWORD)
    with pytest.raises(DataError, match="password: empty"):
        db.add_user("ana", "")
    with pytest.raises(DataError, match="password: too short"):
        db.add_user("ana", "short")
    assert db.users() == []
    with pytest.raises(DataError, match=r"console database nosuchdb://u:\*\*\*@h/d: not a usable URL"):
        ConsoleDB("nosuchdb://u:secret@h/d")
    with pytest.raises(DataError, match=r"console database postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/d: cannot open"):
        ConsoleDB("postgresql+psycopg://u:secret@127.0.0.1:1/d")  # nothing listens on port 1
    with pytest.raises(DataError, match="console database folder .*/console.db/under: .*console.db is a file"):
        ConsoleDB(f"sqlite:///{tmp_path / 'console.db'}/under/file.db")
    (tmp_path / "garbage.db").write_text("not a database")
    with pytest.raises(DataError, match="garbage.db: cannot open it: file is not a database"):
        ConsoleDB(f"sqlite:///{tmp_path / 'garbage.db'}")
    with pytest.raises(DataError, match="use a .csv or .parquet file name"):
        db.export(tmp_path / "touches.xlsx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["console.db", "garbage.db"]


def test_the_database_sits_beside_the_store_unless_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv("TIERWISE_CONSOLE_DB", raising=False)
    monkeypatch.setenv("TIERWISE_SCORES_STORE", str(tmp_path / "served" / "store.parquet"))
    ConsoleDB(hasher=CHEAP).add_user("ana", PASSWORD)
    assert (tmp_path / "served" / "console.db").is_file()
    monkeypatch.setenv("TIERWISE_CONSOLE_DB", f"sqlite:///{tmp_path / 'team.db'}")
    assert ConsoleDB().users() == [] and (tmp_path / "team.db").is_file()


def test_the_cli_adds_removes_users_and_exports_touches(url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TIERWISE_CONSOLE_DB", url)
    code, said = run_cli(["console-user", "add", "ana", "--password-stdin"], monkeypatch, capsys, PASSWORD + "\n")
    assert code == 0 and "console user 'ana' added" in said and PASSWORD not in said
    assert [h.startswith(SHIPPED) for h in stored_hashes(url)] == [True]
    assert ConsoleDB(url, CHEAP).verify("ana", PASSWORD)  # the line, without its newline
    code, said = run_cli(["console-user", "add", "ana", "--password-stdin"], monkeypatch, capsys, "other password\n")
    assert code == 2 and said == "error: console user 'ana' already exists"
    code, said = run_cli(["console-user", "add", "bo", "--password-stdin"], monkeypatch, capsys, "short\n")
    assert code == 2 and said.startswith("error: password: too short")
    code, said = run_cli(["console-user", "add", "bo", "--password-stdin"], monkeypatch, capsys, "\n")
    assert code == 2 and said == "error: password: empty"
    ConsoleDB(url, CHEAP).add_user("bo", PASSWORD)
    code, said = run_cli(["console-user", "list"], monkeypatch, capsys)
    assert code == 0 and said == "ana bo"
    code, said = run_cli(["console-user", "remove", "carol"], monkeypatch, capsys)
    assert code == 2 and said == "error: console user 'carol' does not exist (users: ana, bo)"
    code, said = run_cli(["console-user", "remove", "bo"], monkeypatch, capsys)
    assert code == 0 and ConsoleDB(url, CHEAP).users() == ["ana"]
    ConsoleDB(url, CHEAP).add_touch(touch(note=HOSTILE))
    code, said = run_cli(["touches", "export", "--out", str(tmp_path / "t.csv")], monkeypatch, capsys)
    assert code == 0 and said.startswith("1 touches exported to")
    assert pd.read_csv(tmp_path / "t.csv")["note"].tolist() == ["'" + HOSTILE]
    code, said = run_cli(["touches", "export", "--out", str(tmp_path / "t.xlsx")], monkeypatch, capsys)
    assert code == 2 and "use a .csv or .parquet file name" in said and not (tmp_path / "t.xlsx").exists()


def test_the_password_prompt_asks_twice_without_echo(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'console.db'}"
    monkeypatch.setenv("TIERWISE_CONSOLE_DB", url)
    typed = f"{PASSWORD}\nnope\n{PASSWORD}2\n{PASSWORD}2\n"  # a mismatch is asked again
    prompted = CliRunner().invoke(app, ["console-user", "add", "bo"], input=typed)
    assert prompted.exit_code == 0 and "do not match" in prompted.output and PASSWORD not in prompted.output
    assert ConsoleDB(url, CHEAP).verify("bo", PASSWORD + "2")
