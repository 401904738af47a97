"""Data tests: every breach of the data contract is refused with a message naming table, column and rows."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from features.build import build_features
from features.tables import DataError, load_tables, validate_tables


def good_frames() -> dict[str, pd.DataFrame]:
    """A minimal valid book: two accounts, their contracts and a few events."""
    return {
        "accounts": pd.DataFrame(
            {"account_id": ["A1", "A2"], "created_at": ["2025-01-01", "2025-02-01"], "plan": ["pro", "basic"]}
        ),
        "subscriptions": pd.DataFrame(
            {
                "account_id": ["A1", "A2"],
                "start_date": ["2025-01-01", "2025-02-01"],
                "end_date": ["2026-01-01", "2025-03-01"],
                "arr": [1200.0, 300.0],
                "seats": [10, 2],
            }
        ),
        "events": pd.DataFrame(
            {
                "account_id": ["A1", "A2", "A1"],
                "timestamp": ["2025-01-05 10:00", "2025-02-03 09:00", "2025-03-01 12:00"],
                "event": ["login", "login", "support_ticket"],
                "user_id": ["u1", "u9", "u2"],
            }
        ),
    }


def with_change(table: str, change) -> dict[str, pd.DataFrame]:
    frames = good_frames()
    frames[table] = change(frames[table])
    return frames


def test_valid_tables_are_typed_and_defaults_filled():
    tables = validate_tables(good_frames())
    assert pd.api.types.is_datetime64_any_dtype(tables.events["timestamp"])
    assert (tables.events["count"] == 1).all()
    assert tables.events["value"].isna().all()
    assert tables.data_end == pd.Timestamp("2025-03-02")
    assert "plan" in tables.accounts.columns  # extra columns are kept


@pytest.mark.parametrize(
    ("table", "change", "expected"),
    [
        ("accounts", lambda f: f.drop(columns=["created_at"]), "accounts: missing required column(s) created_at"),
        ("events", lambda f: f.drop(columns=["event"]), "events: missing required column(s) event"),
        ("accounts", lambda f: f.assign(created_at=["2025-01-01", "not-a-date"]), "accounts.created_at: not a date"),
        ("subscriptions", lambda f: f.assign(arr=[1200.0, -5.0]), "subscriptions.arr: arr must be >= 0"),
        ("subscriptions", lambda f: f.assign(seats=["10", "many"]), "subscriptions.seats: not a number"),
        (
            "subscriptions",
            lambda f: f.assign(end_date=["2024-12-01", "2025-03-01"]),
            "subscriptions.end_date: end_date must be after start_date",
        ),
        ("events", lambda f: f.assign(account_id=["A1", "ZZ9", "A1"]), "events.account_id: account not found"),
        ("subscriptions", lambda f: f.assign(account_id=["A1", "NOPE"]), "subscriptions.account_id: account not"),
        ("accounts", lambda f: f.iloc[0:0], "accounts: table is empty"),
        ("events", lambda f: f.iloc[0:0], "events: table is empty"),
        ("accounts", lambda f: f.assign(account_id=["A1", "A1"]), "accounts.account_id: account_id must be unique"),
        ("events", lambda f: f.assign(timestamp=[None, "2025-02-03", "2025-03-01"]), "events.timestamp: empty date"),
    ],
)
def test_contract_breaches_name_table_column_and_rows(table, change, expected):
    with pytest.raises(DataError) as err:
        validate_tables(with_change(table, change))
    assert expected in str(err.value)


def test_error_shows_the_offending_row():
    with pytest.raises(DataError, match=r"row 1: .*'ZZ9'"):
        validate_tables(with_change("events", lambda f: f.assign(account_id=["A1", "ZZ9", "A1"])))


def test_missing_table_and_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_tables(tmp_path / "nowhere")
    for name, frame in good_frames().items():
        if name != "events":
            frame.to_csv(tmp_path / f"{name}.csv", index=False)
    with pytest.raises(DataError, match="events: table missing, expected events.csv or events.parquet"):
        load_tables(tmp_path)


def test_csv_and_parquet_load_the_same(tmp_path):
    for fmt in ("csv", "parquet"):
        folder = tmp_path / fmt
        folder.mkdir()
        for name, frame in good_frames().items():
            getattr(frame, f"to_{fmt}")(folder / f"{name}.{fmt}", index=False)
    a, b = load_tables(tmp_path / "csv"), load_tables(tmp_path / "parquet")
    pd.testing.assert_frame_equal(a.subscriptions, b.subscriptions)
    assert a.events["timestamp"].tolist() == b.events["timestamp"].tolist()
    assert isinstance(b.events["account_id"].dtype, pd.CategoricalDtype)  # big table read compactly
    pd.testing.assert_frame_equal(build_features(a, ["2025-03-01"]).frame, build_features(b, ["2025-03-01"]).frame)


def test_garbage_file_is_a_user_error(tmp_path):
    for name, frame in good_frames().items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    (tmp_path / "events.csv").unlink()
    (tmp_path / "events.parquet").write_bytes(b"\x00not parquet at all")
    with pytest.raises(DataError, match="events: cannot read events.parquet"):
        load_tables(tmp_path)


def test_cli_reports_bad_input_without_traceback(tmp_path):
    frames = with_change("accounts", lambda f: f.drop(columns=["created_at"]))
    for name, frame in frames.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    out = tmp_path / "features.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "tierwise", "features", "--data", str(tmp_path), "--as-of", "2025-03-01"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "created_at" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert not out.exists()


def test_user_table_reader_names_the_file_and_the_problem(tmp_path):
    from features.io import read_user_table

    good = tmp_path / "prev.csv"
    pd.DataFrame({"account_id": ["007", "8"], "tier": ["high_touch", "tech_touch"]}).to_csv(good, index=False)
    assert read_user_table(good, "previous scores", ("account_id",))["account_id"].tolist() == ["007", "8"]
    empty = tmp_path / "empty.csv"
    pd.DataFrame({"account_id": []}).to_csv(empty, index=False)
    cases = [
        (tmp_path / "prev.xlsx", "use a .csv or .parquet file"),
        (tmp_path / "none.csv", "file not found"),
        (empty, "the table has no rows"),
    ]
    for path, expected in cases:
        with pytest.raises(DataError, match=f"previous scores .*{expected}"):
            read_user_table(path, "previous scores", ("account_id",))
    with pytest.raises(DataError, match="missing column.*churn_risk; found account_id, tier"):
        read_user_table(good, "previous scores", ("account_id", "churn_risk"))
