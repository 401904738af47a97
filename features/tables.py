"""Load the three input tables and hold them to the data contract.

Bad input must stop here, with a message that names the table, the column and a few
offending rows, so a user can fix their export instead of debugging a model. The ordinary
junk of real exports (a QA account's events, a double-delivered batch, a device clock set to
2099) is no reason to stop: it is dropped here and reported (`DataQuality`), so a data
scientist sees what was cleaned. Everything downstream may then assume clean, typed frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import DataError
from features.urls import find_table, local_path, read_url_table
from tierwise import settings

TABLES = ("accounts", "subscriptions", "events")
SUFFIXES = (".parquet", ".csv")
REQUIRED = {
    "accounts": {"account_id": "id", "created_at": "date"},
    "subscriptions": {"account_id": "id", "start_date": "date", "end_date": "date", "arr": "number", "seats": "number"},
    "events": {"account_id": "id", "timestamp": "date", "event": "text"},
}
OPTIONAL = {"events": {"user_id": "id", "count": "number", "value": "number"}}
EXAMPLES = 5
NAMED_IDS = 5  # stray account ids a warning names before "and N more"
BULK_SHARE = 0.99  # the bulk of an export: the time by which this share of its events happened
FUTURE_GAP_DAYS = 30  # a silence this long after the bulk ends the export; events beyond it are clock errors
EARLY_DAYS = 90  # events this long before their account's created_at are impossible (trials start days early)
QUALITY_COUNTS = (
    "event_rows",
    "duplicate_events",
    "unknown_account_events",
    "unknown_account_subscriptions",
    "future_events",
    "early_events",
)


@dataclass(frozen=True)
class DataQuality:
    """What loading cleaned out of the tables, so a data scientist sees it in the output and the run.

    Ordinary junk of real exports is dropped and counted here instead of stopping a run:
    events and subscriptions of accounts the accounts table lacks, exact duplicate event rows
    (double-delivered batches), and events with impossible timestamps.
    """

    event_rows: int = 0  # rows read, before cleaning
    duplicate_events: int = 0
    unknown_account_events: int = 0
    unknown_event_accounts: dict[str, int] = field(default_factory=dict)  # id -> dropped rows, most first
    unknown_account_subscriptions: int = 0
    unknown_subscription_accounts: dict[str, int] = field(default_factory=dict)
    future_events: int = 0
    future_first: str | None = None  # the earliest day of a dropped future event
    export_end: str | None = None  # the export's last day with events, when future events were dropped
    early_events: int = 0  # events more than EARLY_DAYS before their account's created_at

    def warnings(self) -> list[str]:
        """One line per kind of junk dropped (none for clean tables)."""
        out = []
        if self.duplicate_events:
            out.append(f"events: dropped {self.duplicate_events:,} exact duplicate row(s) (double-delivered batches)")
        for table, rows, ids in (
            ("events", self.unknown_account_events, self.unknown_event_accounts),
            ("subscriptions", self.unknown_account_subscriptions, self.unknown_subscription_accounts),
        ):
            if rows:
                out.append(f"{table}: dropped {rows:,} row(s) of {len(ids):,} account(s) not in accounts: {named(ids)}")
        if self.future_events:
            out.append(
                f"events: dropped {self.future_events:,} row(s) dated {self.future_first} or later, more than "
                f"{FUTURE_GAP_DAYS} days after the export's last day {self.export_end} (a wrong device clock)"
            )
        if self.early_events:
            out.append(
                f"events: dropped {self.early_events:,} row(s) dated more than {EARLY_DAYS} days before their "
                "account's created_at"
            )
        return out

    def counts(self) -> dict[str, float]:
        """The row counts as numbers, for an MLflow run's metrics."""
        return {name: float(getattr(self, name)) for name in QUALITY_COUNTS}

    def to_dict(self) -> dict:
        """Everything, as plain data (the run's `data_quality.json`)."""
        return asdict(self)


def named(ids: dict[str, int]) -> str:
    """'internal-qa-bot (25 rows), trial-9 (3 rows) and 4 more': the ids with the most rows first."""
    shown = ", ".join(f"{i} ({n:,} row{'s' if n != 1 else ''})" for i, n in list(ids.items())[:NAMED_IDS])
    rest = len(ids) - NAMED_IDS
    return shown + (f" and {rest:,} more" if rest > 0 else "")


@dataclass(frozen=True)
class Tables:
    """The validated input: one frame per table, typed as the contract says.

    With the Spark engine (`features.spark_engine`) the events stay in Spark: `events` then holds
    only each event type's first and last event (what single-machine code reads from it: the data's
    span, the event types, whether users are named), and `windows` computes the window metrics.
    """

    accounts: pd.DataFrame
    subscriptions: pd.DataFrame
    events: pd.DataFrame
    quality: DataQuality = field(default_factory=DataQuality)
    windows: Callable[..., pd.DataFrame] | None = None  # (metrics, dates) -> window metrics; None: numpy engine

    @property
    def data_end(self) -> pd.Timestamp:
        """The first day the data knows nothing about: the day after the last event."""
        return self.events["timestamp"].max().normalize() + pd.Timedelta(days=1)

    @property
    def has_users(self) -> bool:
        """Whether events name their users (an absent or entirely empty `user_id` does not)."""
        return bool(self.events["user_id"].notna().any())


ENGINES = ("numpy", "spark")


@dataclass(frozen=True)
class Engine:
    """Which engine reads the events and computes the window metrics: the embedded numpy one, or Spark.

    Attributes:
        name: `numpy` (the default: one machine, in memory) or `spark` (PySpark, `features.spark_engine`).
        spark_master: Spark's master URL (`local[4]`, `spark://host:7077`, `yarn`); None: `local[*]`,
            or Spark Connect when `SPARK_REMOTE` is set.
    """

    name: str = "numpy"
    spark_master: str | None = None

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise DataError(f"--engine {self.name!r}: use {' or '.join(ENGINES)}")
        if self.spark_master is not None and self.name != "spark":
            raise DataError("--spark-master is for --engine spark")


def load_tables(data_dir: Path | str, engine: Engine | None = None) -> Tables:
    """Read `accounts`, `subscriptions` and `events` (CSV or Parquet) from a folder and validate them.

    With `Engine("spark")` the events are read and cleaned by Spark and stay there; the rules and the
    result are the same. `data_dir` may be an object-storage URL with either engine (`features.urls`).

    Raises:
        DataError: a table is missing or empty, a required column is absent, a value has the wrong
            type, a date does not parse, ARR or seats are negative, a term ends before it starts,
            or more than `settings.max_unknown_account_share()` of the rows of a table name
            accounts that `accounts` does not have (a broken join key; fewer are dropped).
    """
    if engine is not None and engine.name == "spark":
        from features.spark_engine import load_tables_spark, spark_session

        return load_tables_spark(data_dir, spark_session(engine.spark_master))
    location = data_location(data_dir)
    return validate_tables({name: read_table(location, name) for name in TABLES})


def data_location(data_dir: Path | str) -> Path | str:
    """A data folder that exists (a `file://` URL as its path), or an object-storage URL (`features.urls`)."""
    folder = local_path(data_dir)
    if folder is None:
        return str(data_dir)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist")
    return folder


def validate_tables(frames: dict[str, pd.DataFrame]) -> Tables:
    """Type and check raw frames (as read from files) against the data contract, and drop their junk.

    The junk every real export has (rows of unknown accounts, duplicate events, impossible
    timestamps) is dropped and counted in `Tables.quality`; see `load_tables` for what is refused.
    """
    events = typed_table("events", frames["events"])
    accounts, subs, stray_subs = contract_tables(frames["accounts"], frames["subscriptions"])
    event_rows = len(events)
    duplicate = duplicate_rows(events)
    events = events[~duplicate] if duplicate.any() else events
    events, stray_events = known_accounts("events", events, accounts, unknown_share_limit())
    events, late = drop_future(events)
    events, early = drop_early(events, accounts)
    quality = DataQuality(
        event_rows=event_rows,
        duplicate_events=int(duplicate.sum()),
        unknown_account_events=sum(stray_events.values()),
        unknown_event_accounts=stray_events,
        unknown_account_subscriptions=sum(stray_subs.values()),
        unknown_subscription_accounts=stray_subs,
        future_events=len(late),
        future_first=str(late.min().date()) if len(late) else None,
        export_end=str(events["timestamp"].max().date()) if len(late) and len(events) else None,
        early_events=early,
    )
    if events.empty:
        raise DataError("events: no rows left once the junk was dropped: " + "; ".join(quality.warnings()))
    events["count"] = events["count"].fillna(1) if "count" in events else 1
    if "value" not in events:
        events["value"] = float("nan")
    if "user_id" not in events:
        events["user_id"] = pd.NA
    return Tables(accounts=accounts, subscriptions=subs, events=events, quality=quality)


def contract_tables(
    accounts: pd.DataFrame, subscriptions: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """The typed and checked accounts and subscriptions, and the subscription rows dropped per unknown account.

    The small tables, validated the same way whichever engine reads the events (`features.spark_engine`).
    """
    accounts, subs = typed_table("accounts", accounts), typed_table("subscriptions", subscriptions)
    for col in ("arr", "seats"):
        fail_rows("subscriptions", col, subs[col] < 0, subs, f"{col} must be >= 0")
    fail_rows(
        "subscriptions", "end_date", subs["end_date"] <= subs["start_date"], subs, "end_date must be after start_date"
    )
    fail_rows("accounts", "account_id", accounts["account_id"].duplicated(), accounts, "account_id must be unique")
    subs, stray = known_accounts("subscriptions", subs, accounts, unknown_share_limit())
    return accounts, subs, stray


def unknown_share_limit() -> float:
    """The `TIERWISE_MAX_UNKNOWN_ACCOUNT_SHARE` setting, checked."""
    try:
        share = settings.max_unknown_account_share()
    except ValueError:
        share = float("nan")
    if not 0 <= share <= 1:  # NaN fails too
        raise DataError("TIERWISE_MAX_UNKNOWN_ACCOUNT_SHARE must be a share between 0 and 1, e.g. 0.05")
    return share


def duplicate_rows(events: pd.DataFrame) -> np.ndarray:
    """Events equal in every column to an earlier event (a double-delivered batch).

    Only events sharing their timestamp with another can be duplicates, so those few are found
    with one sort and compared in full: `DataFrame.duplicated` over millions of events costs
    seconds more than the rest of loading together.
    """
    stamps = events["timestamp"].to_numpy()
    order = np.argsort(stamps, kind="stable")
    same = stamps[order[1:]] == stamps[order[:-1]]
    shared = np.zeros(len(events), dtype=bool)
    shared[order[1:][same]] = True
    shared[order[:-1][same]] = True
    out = np.zeros(len(events), dtype=bool)
    if shared.any():
        out[shared] = events[shared].duplicated().to_numpy()
    return out


def known_accounts(
    table: str, frame: pd.DataFrame, accounts: pd.DataFrame, max_share: float
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows of accounts `accounts` has, and the dropped rows per unknown id (most first).

    A QA account or a deleted trial leaves a few stray rows; a share above `max_share` means the
    ids do not join at all (another id format, a wrong export), which no model should be trained on.
    """
    unknown = ~frame["account_id"].isin(accounts["account_id"]).to_numpy()
    if not unknown.any():
        return frame, {}
    if unknown.mean() > max_share:
        fail_rows(
            table,
            "account_id",
            pd.Series(unknown, index=frame.index),
            frame,
            f"account not found in accounts ({unknown.mean():.1%} of the rows, more than the "
            f"{max_share:.1%} that TIERWISE_MAX_UNKNOWN_ACCOUNT_SHARE allows to drop: is the join key broken?)",
        )
    counts = frame.loc[unknown, "account_id"].astype(str).value_counts(sort=False)
    return frame[~unknown], {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


def drop_future(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Drop events from far after the export ends (a device clock set to 2099); return the dropped timestamps.

    The export's end is found from its own days, not its last timestamp (which a single bad clock
    decides): start where `BULK_SHARE` of the events happened, walk forward over the days that
    have events, and stop at the first silence longer than `FUTURE_GAP_DAYS`. A genuine export
    has events every few days up to the day it was made; a wrong clock sits beyond such a gap.
    """
    if events.empty:
        return events, events["timestamp"]
    stamps = events["timestamp"]
    tail = stamps[stamps >= stamps.quantile(BULK_SHARE).normalize()]
    cutoff = future_cutoff(np.unique(tail.dt.normalize().to_numpy()))
    if cutoff is None:
        return events, events["timestamp"].iloc[:0]
    late = (events["timestamp"] >= cutoff).to_numpy()
    return events[~late], events["timestamp"][late]


def future_cutoff(days: np.ndarray) -> pd.Timestamp | None:
    """The day after the export's last day, given the sorted days with events from the bulk's end on (None: no gap).

    Shared by both engines: `drop_future` and `features.spark_engine` find those days their own way.
    """
    gaps = np.flatnonzero(np.diff(days) > np.timedelta64(FUTURE_GAP_DAYS, "D"))
    return pd.Timestamp(days[gaps[0]]) + pd.Timedelta(days=1) if len(gaps) else None


def drop_early(events: pd.DataFrame, accounts: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop events dated more than `EARLY_DAYS` before their account was created (an epoch or default date)."""
    created = accounts["created_at"].to_numpy()[positions_in(pd.Index(accounts["account_id"]), events["account_id"])]
    early = events["timestamp"].to_numpy() < created - np.timedelta64(EARLY_DAYS, "D")
    return (events[~early], int(early.sum())) if early.any() else (events, 0)


def read_table(data_dir: Path | str, name: str) -> pd.DataFrame:
    """Read one table, whichever of the supported formats it comes in (`data_location` says where)."""
    if isinstance(data_dir, str):  # object storage
        return read_url_table(find_table(data_dir, name, SUFFIXES), name)
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
            if required:
                converted = converted.astype(str)
            else:  # a blank optional value (an empty user_id) is a missing one
                filled = values.notna().to_numpy() & (converted != "").fillna(False).to_numpy()
                converted = converted.astype(str).where(filled, None)
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


def positions_in(index: pd.Index, values: pd.Series) -> np.ndarray:
    """Position of each value in `index` (-1 if absent); for a categorical, looked up once per category."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return index.get_indexer(values.cat.categories).astype(np.int64)[values.cat.codes.to_numpy()]
    return index.get_indexer(values).astype(np.int64)


def is_clean_category(values: pd.Series) -> bool:
    """A categorical of stripped, non-blank text labels, as `read_parquet_compact` gives for clean ids."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return False
    labels = values.cat.categories
    return pd.api.types.is_string_dtype(labels) and bool(((labels == labels.str.strip()) & (labels != "")).all())


def fail_rows(table: str, col: str, bad: pd.Series, frame: pd.DataFrame, problem: str) -> None:
    """Raise a DataError naming the table, column and the first few offending rows, if any row is bad."""
    if not bad.any():
        return
    rows = frame.loc[bad.to_numpy()].head(EXAMPLES)
    shown = "; ".join(
        f"row {idx}: " + ", ".join(f"{c}={row[c]!r}" for c in rows.columns[:4]) for idx, row in rows.iterrows()
    )
    raise DataError(f"{table}.{col}: {problem} in {int(bad.sum())} row(s), e.g. {shown}")
