"""Load the three input tables and hold them to the data contract.

Bad input must stop here, with a message that names the table, the column and a few
offending rows, so a user can fix their export instead of debugging a model. Everything
downstream may then assume clean, typed frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import DataError

TABLES = ("accounts", "subscriptions", "events")
SUFFIXES = (".parquet", ".csv")
REQUIRED = {
    "accounts": {"account_id": "id", "created_at": "date"},
    "subscriptions": {"account_id": "id", "start_date": "date", "end_date": "date", "arr": "number", "seats": "number"},
    "events": {"account_id": "id", "timestamp": "date", "event": "text"},
}
OPTIONAL = {"events": {"user_id": "id", "count": "number", "value": "number"}}
EXAMPLES = 5


@dataclass(frozen=True)
class Tables:
    """The validated input: one frame per table, typed as the contract says."""

    accounts: pd.DataFrame
    subscriptions: pd.DataFrame
    events: pd.DataFrame

    @property
    def data_end(self) -> pd.Timestamp:
        """The first day the data knows nothing about: the day after the last event."""
        return self.events["timestamp"].max().normalize() + pd.Timedelta(days=1)


def load_tables(data_dir: Path | str) -> Tables:
    """Read `accounts`, `subscriptions` and `events` (CSV or Parquet) from a folder and validate them.

    Raises:
        DataError: a table is missing or empty, a required column is absent, a value has the wrong
            type, a date does not parse, ARR or seats are negative, a term ends before it starts,
            or a row names an account that `accounts` does not have.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    return validate_tables({name: read_table(data_dir, name) for name in TABLES})


def validate_tables(frames: dict[str, pd.DataFrame]) -> Tables:
    """Type and check raw frames (as read from files) against the data contract."""
    typed = {name: typed_table(name, frames[name]) for name in TABLES}
    subs, accounts = typed["subscriptions"], typed["accounts"]
    for col in ("arr", "seats"):
        fail_rows("subscriptions", col, subs[col] < 0, subs, f"{col} must be >= 0")
    fail_rows(
        "subscriptions", "end_date", subs["end_date"] <= subs["start_date"], subs, "end_date must be after start_date"
    )
    fail_rows("accounts", "account_id", accounts["account_id"].duplicated(), accounts, "account_id must be unique")
    known = set(accounts["account_id"])
    for name in ("subscriptions", "events"):
        frame = typed[name]
        fail_rows(name, "account_id", ~frame["account_id"].isin(known), frame, "account not found in accounts")
    events = typed["events"]
    events["count"] = events["count"].fillna(1) if "count" in events else 1
    if "value" not in events:
        events["value"] = float("nan")
    if "user_id" not in events:
        events["user_id"] = pd.NA
    return Tables(accounts=accounts, subscriptions=subs, events=events)


def read_table(data_dir: Path, name: str) -> pd.DataFrame:
    """Read one table, whichever of the supported formats it comes in."""
    for suffix in SUFFIXES:
        path = data_dir / f"{name}{suffix}"
        if path.exists():
            try:
                if suffix == ".csv":
                    return pd.read_csv(path, low_memory=False)
                return read_parquet_compact(path) if name == "events" else pd.read_parquet(path)
            except Exception as exc:  # a corrupt file is user input too
                raise DataError(f"{name}: cannot read {path.name}: {exc}") from exc
    raise DataError(f"{name}: table missing, expected {name}.csv or {name}.parquet in {data_dir}")


def read_parquet_compact(path: Path) -> pd.DataFrame:
    """Read Parquet with text columns dictionary-encoded: millions of repeated ids cost codes, not strings."""
    schema = pq.read_schema(path)
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    return pq.read_table(path, read_dictionary=text).to_pandas()


def typed_table(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Check presence of the required columns and convert every known column to its contract type."""
    if frame.empty:
        raise DataError(f"{name}: table is empty")
    missing = [col for col in REQUIRED[name] if col not in frame.columns]
    if missing:
        raise DataError(f"{name}: missing required column(s) {', '.join(missing)}; found {', '.join(frame.columns)}")
    frame = frame.copy(deep=False)  # copy-on-write: the caller's frame is never modified, nothing is duplicated
    optional = {col: kind for col, kind in OPTIONAL.get(name, {}).items() if col in frame.columns}
    for col, kind in {**REQUIRED[name], **optional}.items():
        frame[col] = typed_column(name, col, kind, frame[col], required=col in REQUIRED[name])
    return frame


def typed_column(table: str, col: str, kind: str, values: pd.Series, required: bool) -> pd.Series:
    """Convert one column; values that do not convert are reported with their row numbers."""
    if kind in ("id", "text"):
        if is_clean_category(values):
            converted = values  # already compact and stripped: keep the codes
        else:
            converted = values.astype("string").str.strip()
            converted = converted.astype(str).where(values.notna(), None) if not required else converted.astype(str)
        if required:
            fail_rows(table, col, values.isna() | (converted == ""), values.to_frame(), "empty value")
        return converted
    if kind == "date" and values.dtype == "datetime64[ns]":
        if required:
            fail_rows(table, col, values.isna(), values.to_frame(), "empty date")
        return values  # already naive timestamps (Parquet): no copy
    if kind == "date":
        converted = pd.to_datetime(values, errors="coerce", utc=True, format="mixed").dt.tz_localize(None)
        fail_rows(table, col, converted.isna() & values.notna(), values.to_frame(), "not a date")
        if required:
            fail_rows(table, col, values.isna(), values.to_frame(), "empty date")
        return converted.astype("datetime64[ns]")
    converted = pd.to_numeric(values, errors="coerce")
    fail_rows(table, col, converted.isna() & values.notna(), values.to_frame(), "not a number")
    if required:
        fail_rows(table, col, values.isna(), values.to_frame(), "empty value")
    return converted.astype(float)


def is_clean_category(values: pd.Series) -> bool:
    """A categorical of stripped text labels, as `read_parquet_compact` gives for clean ids."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return False
    labels = values.cat.categories
    return pd.api.types.is_string_dtype(labels) and bool((labels == labels.str.strip()).all())


def fail_rows(table: str, col: str, bad: pd.Series, frame: pd.DataFrame, problem: str) -> None:
    """Raise a DataError naming the table, column and the first few offending rows, if any row is bad."""
    if not bad.any():
        return
    rows = frame.loc[bad.to_numpy()].head(EXAMPLES)
    shown = "; ".join(
        f"row {idx}: " + ", ".join(f"{c}={row[c]!r}" for c in rows.columns[:4]) for idx, row in rows.iterrows()
    )
    raise DataError(f"{table}.{col}: {problem} in {int(bad.sum())} row(s), e.g. {shown}")
