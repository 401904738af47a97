"""The console database on SQLite and on a real PostgreSQL: users, touches, export, bad input, the CLI."""

from __future__ import annotations

from datetime import date

import pytest

from serving.console.db import ConsoleDB, Touch

PASSWORD = "correct horse battery"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> ConsoleDB:
    """An empty console database: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return ConsoleDB(f"sqlite:///{tmp_path / 'console.db'}")
    server = request.getfixturevalue("postgres")
    return ConsoleDB(server.create_database(f"console_{tmp_path.name.lower()[-40:]}"))


def test_users_and_touches_round_trip(db):
    db.add_user("ana", PASSWORD)
    assert db.verify("ana", PASSWORD) and not db.verify("ana", PASSWORD + "!") and db.users() == ["ana"]
    touch = Touch("ACC-1", "call", date(2026, 11, 20), "renewal agreed", "spoke to the CFO", "ana", risk_at_touch=0.4)
    touch_id = db.add_touch(touch)
    (back,) = db.touches("ACC-1")
    assert back.id == touch_id and back.note == "spoke to the CFO" and back.risk_at_touch == 0.4
    assert back.recorded_at == touch.recorded_at
