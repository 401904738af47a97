"""The score history: every published score batch, kept append-only, so each account's scores have a trend.

Layout: Parquet, one file per published batch, partitioned by as-of date,
`ROOT/as_of=2026-11-27/batch-20261127T153012123456Z-1a2b3c4d.parquet` (written at, UTC, and a
random tag, so two publishers never pick the same name). ROOT is `score_history/` beside the
latest-scores store by default (`tierwise.settings.score_history`), or any folder or URL
pyarrow's filesystem layer opens (`TIERWISE_HISTORY=s3://bucket/tierwise/history`), so object
storage needs no code of ours.

Why this shape:

- Append-only: a batch file is never rewritten or deleted. Publishing the same as-of date again
  (a rescore after a data fix) adds a second file beside the first; readers take the latest
  written per as-of date unless asked for another (`read_batch(..., written_at=...)`,
  `batches(superseded=True)`), so nothing a CSM once saw is lost.
- Atomic: locally a batch is written under a hidden temporary name and renamed into place; on an
  object store a batch is one object, and a PUT (or a multipart upload, on completion) makes the
  whole object visible at once. Readers list only finished names, so they never see half a batch.
- Fast for one account: rows are sorted by `account_id` and written in small row groups, whose
  min/max statistics let a reader skip every row group of a file but the account's own;
  `HistoryReader` keeps the trend columns of the whole history in memory and reloads only when
  the batch listing changes.
- Self-describing: the batch facts (as-of, written at, accounts, model versions) sit in each
  file's footer, and the model versions in every row too, so listing needs no index file that
  concurrent publishers could race to rewrite.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from features.errors import DataError
from features.io import atomic_path
from serving.store import batch_as_of, model_versions
from tierwise import settings

BATCH_FILE = re.compile(r"^batch-(?P<stamp>\d{8}T\d{12}Z)-[0-9a-f]{8}\.parquet$")
PARTITION = re.compile(r"^as_of=(?P<as_of>\d{4}-\d{2}-\d{2})$")
STAMP = "%Y%m%dT%H%M%S%fZ"
FACTS = b"tierwise_history"  # the key of the batch facts in each file's Parquet footer
ROW_GROUP = 256  # rows per row group: one account's read decodes ~256 rows per batch, not the whole batch
CACHED_BATCHES = 4  # whole batches a HistoryReader keeps (~3 KB a row): the latest and previous, with room
READ_THREADS = 8  # batch files read at once for one account: object stores answer each read in tens of ms
LISTING = ["as_of", "written_at", "accounts", "churn_version", "growth_version", "path", "superseded"]
# What `HistoryReader` keeps in memory for every account and batch: the trend, without the reason texts
# (~3 KB a row), which would make 10,000 accounts x 52 batches weigh over a gigabyte (65 MB without them).
# Pass `columns=(*TREND_COLUMNS, "reason_1")` for a trend of the top reason too (~40 MB more at that size).
TREND_COLUMNS = (
    "account_id",
    "as_of",
    "churn_risk",
    "growth_potential",
    "arr",
    "arr_at_risk",
    "expected_expansion",
    "renewal_date",
    "tier",
    "segment",
    "escalate",
    "insufficient_history",
    "churn_model_version",
    "growth_model_version",
)


@dataclass(frozen=True)
class Batch:
    """One published batch in the history: what it holds and where."""

    as_of: date
    written_at: datetime  # UTC
    accounts: int
    churn_version: str  # the churn model version(s) that scored it, "3" (or "3,4" when rows mix versions)
    growth_version: str
    path: str  # the file, inside the history's filesystem


def history_root(store: Path | None = None) -> str:
    """Where the history lives: `TIERWISE_HISTORY`, else `score_history/` beside the latest-scores store.

    Args:
        store: the latest-scores store the history belongs to (default: `settings.scores_store()`).
    """
    return settings.score_history(store)


def append_batch(scored: pd.DataFrame, root: str | Path | None = None) -> Batch:
    """Add a scored batch to the history as one new file, atomically; nothing existing is touched.

    Called by `serving.store.publish` for every batch it publishes.

    Args:
        scored: the batch (the score output: `account_id`, `as_of`, the model version columns, ...).
        root: the history (default: `history_root()`).

    Raises:
        DataError: the batch is empty or lacks `account_id`/`as_of`, or the history cannot be written.
    """
    missing = [c for c in ("account_id", "as_of") if c not in scored.columns]
    if missing:
        raise DataError(f"score history: the batch lacks column(s) {', '.join(missing)}")
    if scored.empty:
        raise DataError("score history: the batch has no rows; an empty batch is not kept")
    versions = model_versions(scored)
    written_at = datetime.now(UTC)
    batch = Batch(
        as_of=date.fromisoformat(batch_as_of(scored)),
        written_at=written_at,
        accounts=int(scored["account_id"].nunique()),
        churn_version=",".join(versions.get("churn", [])),
        growth_version=",".join(versions.get("growth", [])),
        path="",
    )
    table = pa.Table.from_pandas(scored.sort_values("account_id", kind="stable"), preserve_index=False)
    facts = json.dumps(asdict(batch), default=str).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), FACTS: facts})
    fs, base = filesystem(root)
    folder = f"{base}/as_of={batch.as_of.isoformat()}"
    path = f"{folder}/batch-{written_at.strftime(STAMP)}-{secrets.token_hex(4)}.parquet"
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            with atomic_path(path) as tmp:  # hidden temp name, renamed into place: a reader lists whole files only
                write_parquet(table, str(tmp), None)
        else:  # one object: the store makes it visible whole when the upload completes
            write_parquet(table, path, fs)
    except OSError as exc:
        raise DataError(f"score history {shown(root)}: cannot write the batch: {exc}") from exc
    return Batch(**{**asdict(batch), "path": path})


def write_parquet(table: pa.Table, where: str, fs: pafs.FileSystem | None) -> None:
    """Write a batch file: small row groups with `account_id` statistics, so one account's read skips the rest.

    Statistics of the id column only: those of every column would triple the footer every read parses.
    """
    pq.write_table(
        table, where, filesystem=fs, row_group_size=ROW_GROUP, compression="zstd", write_statistics=["account_id"]
    )


def batches(root: str | Path | None = None, superseded: bool = False) -> pd.DataFrame:
    """One row per batch, oldest as-of first: `as_of`, `written_at`, `accounts`, `churn_version`,
    `growth_version`, `path`, `superseded`.

    An empty or missing history gives an empty frame (with those columns): a listing of nothing.

    Args:
        superseded: also list batches a later publication of the same as-of date replaced.
    """
    fs, base = filesystem(root)
    return listing_frame(entries(fs, base, root), {}, fs, superseded)


def read_batch(as_of, root: str | Path | None = None, written_at=None) -> pd.DataFrame:
    """Every row of the batch of one as-of date (the latest written, or the one written at `written_at`).

    Raises:
        DataError: the history holds no such batch.
    """
    fs, base = filesystem(root)
    found = pick(entries(fs, base, root), day(as_of), written_at)
    if found is None:
        at = f" written at {pd.Timestamp(written_at).isoformat()}" if written_at is not None else ""
        raise DataError(f"score history {shown(root)}: no batch as of {day(as_of)}{at}")
    return read_file(fs, found[2])


def previous_batch(as_of, root: str | Path | None = None) -> pd.DataFrame | None:
    """The batch before `as_of`: the latest written of the newest as-of date before it; None for the first."""
    fs, base = filesystem(root)
    earlier = [e for e in latest(entries(fs, base, root)) if e[0] < day(as_of)]
    return read_file(fs, earlier[-1][2]) if earlier else None


def account_history(account_id: str, root: str | Path | None = None) -> pd.DataFrame:
    """Every batch's row for one account (all the score columns), oldest as-of first.

    Reads only the row group holding the account in each batch file (statistics pushdown); a
    caller reading many accounts (the console) should use `HistoryReader` instead.

    Raises:
        DataError: the history is empty, or no batch holds the account.
    """
    fs, base = filesystem(root)
    files = [e[2] for e in latest(entries(fs, base, root))]
    if not files:
        raise DataError(empty_message(root))
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(files))) as pool:  # object stores are latency-bound
        parts = list(pool.map(lambda path: account_rows(fs, path, str(account_id)), files))
    found = pa.concat_tables(parts, promote_options="permissive")
    if found.num_rows == 0:
        raise DataError(unknown_message(account_id, root, len(files)))
    return found.to_pandas().sort_values("as_of", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Loaded:
    """What a `HistoryReader` holds, replaced whole on reload, so a reading thread never mixes two loads."""

    entries: tuple[tuple[str, datetime, str], ...] = ()  # every finished batch file, as `entries` lists them
    trend: pa.Table = field(default_factory=lambda: pa.table({}))  # the trend columns, sorted by account, as-of
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # account id -> (first row, row count)


class HistoryReader:
    """The history held in memory for many quick reads (the console's pages), reloaded when it changes.

    The trend columns (`TREND_COLUMNS`, or those given) of the latest batch per as-of date are
    loaded once into one Arrow table sorted by account, with each account's row range indexed,
    so one account's trend is a slice, not a read. At most every `recheck_seconds` the reader
    lists the batch files again; only when that listing changed does it load the new files
    (and drop those superseded). Batch files never change once written, so their footers,
    trend columns and the last few whole batches read are cached by path. Safe to share
    between threads.
    """

    def __init__(
        self, root: str | Path | None = None, columns: tuple[str, ...] = TREND_COLUMNS, recheck_seconds: float = 1.0
    ):
        self.root = str(root) if root is not None else history_root()
        self.fs, self.base = filesystem(self.root)
        self.columns = tuple(dict.fromkeys(("account_id", "as_of", *columns)))
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()  # one reload at a time
        self._cache_lock = threading.Lock()  # guards the whole-batch cache
        self._checked = float("-inf")
        self._ready = False  # until the first load: readers wait for it rather than see an empty history
        self._loaded = Loaded()
        self._facts: dict[str, dict] = {}  # footer facts by path
        self._tables: dict[str, pa.Table] = {}  # trend columns by path
        self._batches: OrderedDict[str, pd.DataFrame] = OrderedDict()  # whole batches by path, least recent first

    def refresh(self, force: bool = False) -> bool:
        """List the batch files (at most every `recheck_seconds` unless forced); reload if they changed.

        While one thread reloads (a second or so for a year of a large book), the others do not
        wait: they go on reading the previous load, unless there is none yet.

        Returns:
            Whether the history changed since the last load (False too when another thread is reloading).
        """
        if not self._lock.acquire(blocking=force or not self._ready):
            return False
        try:
            now = time.monotonic()
            if not force and now - self._checked < self.recheck_seconds:
                return False
            found = tuple(entries(self.fs, self.base, self.root))
            changed = found != self._loaded.entries
            if changed:
                self._loaded = self._load(found)
            self._checked, self._ready = now, True
            return changed
        finally:
            self._lock.release()

    def _load(self, found: tuple[tuple[str, datetime, str], ...]) -> Loaded:
        """The trend of the latest batch per as-of in `found`, reading only the files not read before."""
        kept = [e[2] for e in latest(list(found))]
        unread = [path for path in kept if path not in self._tables]
        if unread:
            with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(unread))) as pool:
                self._tables.update(zip(unread, pool.map(self._read_trend, unread), strict=True))
        self._tables = {path: self._tables[path] for path in kept}
        if not kept:
            return Loaded(found)
        trend = pa.concat_tables(self._tables.values(), promote_options="permissive")
        trend = trend.sort_by([("account_id", "ascending"), ("as_of", "ascending")])
        ids = trend["account_id"].to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        spans = zip(starts.tolist(), np.diff(np.r_[starts, len(ids)]).tolist(), strict=True)
        return Loaded(found, trend, dict(zip(ids[starts].tolist(), spans, strict=True)))

    def _read_trend(self, path: str) -> pa.Table:
        """The trend columns a batch file has (an older batch may lack a newer column)."""
        names = set(pq.read_schema(path, filesystem=self.fs).names)
        return pq.read_table(
            path, filesystem=self.fs, columns=[c for c in self.columns if c in names], partitioning=None
        )

    def batches(self, superseded: bool = False) -> pd.DataFrame:
        """`batches()`, from the cached listing and footers."""
        self.refresh()
        return listing_frame(list(self._loaded.entries), self._facts, self.fs, superseded)

    def account(self, account_id: str) -> pd.DataFrame:
        """One account's trend (the reader's columns, one row per as-of date, oldest first).

        Raises:
            DataError: the history is empty, or no batch holds the account.
        """
        self.refresh()
        loaded = self._loaded
        span = loaded.rows.get(str(account_id))
        if span is None:
            if not loaded.rows:
                raise DataError(empty_message(self.root))
            raise DataError(unknown_message(account_id, self.root, len(latest(list(loaded.entries)))))
        return loaded.trend.slice(*span).to_pandas()

    @property
    def nbytes(self) -> int:
        """The memory the loaded trend takes, in bytes."""
        return self._loaded.trend.nbytes

    def accounts(self) -> list[str]:
        """Every account id the history holds, sorted."""
        self.refresh()
        return list(self._loaded.rows)

    def row(self, account_id: str, as_of) -> pd.Series | None:
        """One account's whole row (every column, reasons included) in the batch of `as_of`; None if absent.

        Reads the one row group holding the account (a few milliseconds), not the batch.
        """
        self.refresh()
        found = pick(list(self._loaded.entries), day(as_of))
        if found is None:
            return None
        rows = account_rows(self.fs, found[2], str(account_id)).to_pandas()
        return rows.iloc[0] if len(rows) else None

    def batch(self, as_of, written_at=None) -> pd.DataFrame:
        """`read_batch` against this reader's history; the last few batches read are kept in memory.

        The frame returned is shared with the cache: add columns freely, but do not change its values.
        """
        self.refresh()
        found = pick(list(self._loaded.entries), day(as_of), written_at)
        if found is None:
            return read_batch(as_of, self.root, written_at)  # raises the same DataError
        return self._whole(found[2]).copy(deep=False)

    def previous(self, as_of) -> pd.DataFrame | None:
        """`previous_batch` against this reader's history (cached like `batch`)."""
        self.refresh()
        earlier = [e for e in latest(list(self._loaded.entries)) if e[0] < day(as_of)]
        return self._whole(earlier[-1][2]).copy(deep=False) if earlier else None

    def _whole(self, path: str) -> pd.DataFrame:
        """A whole batch file, from the cache of the last `CACHED_BATCHES` read when it is there."""
        with self._cache_lock:
            if path in self._batches:
                self._batches.move_to_end(path)
                return self._batches[path]
        frame = read_file(self.fs, path)
        with self._cache_lock:
            self._batches[path] = frame
            while len(self._batches) > CACHED_BATCHES:
                self._batches.popitem(last=False)
        return frame


def filesystem(root: str | Path | None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and base path of a history root (a local folder, `file://`, `s3://`, `gs://`, ...)."""
    place = str(root) if root is not None else history_root()
    if "://" not in place:
        place = str(Path(place).resolve())
    try:
        fs, base = pafs.FileSystem.from_uri(place)
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(f"score history {shown(place)}: cannot open it: {exc}") from exc
    return fs, base.rstrip("/")


def entries(fs: pafs.FileSystem, base: str, root) -> list[tuple[str, datetime, str]]:
    """Every finished batch file as (as-of ISO date, written at, path), in (as-of, written-at) order.

    Only names of finished batches count: a temporary file being written is never listed.
    """
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"score history {shown(root)}: cannot list it: {exc}") from exc
    found = []
    for info in infos:
        folder, _, name = info.path.rpartition("/")
        part, name_match = PARTITION.match(folder.rpartition("/")[2]), BATCH_FILE.match(name)
        if info.type == pafs.FileType.File and part and name_match:
            stamp = datetime.strptime(name_match["stamp"], STAMP).replace(tzinfo=UTC)
            found.append((part["as_of"], stamp, info.path))
    return sorted(found)


def latest(found: list[tuple[str, datetime, str]]) -> list[tuple[str, datetime, str]]:
    """The latest written entry of each as-of date, in as-of order (`found` is sorted)."""
    return list({e[0]: e for e in found}.values())


def pick(found: list[tuple[str, datetime, str]], as_of: str, written_at=None) -> tuple[str, datetime, str] | None:
    """The entry of `as_of`: the latest written, or the one written at `written_at`; None when absent."""
    same = [e for e in found if e[0] == as_of]
    if written_at is not None:
        at = pd.Timestamp(written_at)
        at = at.tz_localize(UTC) if at.tzinfo is None else at
        same = [e for e in same if pd.Timestamp(e[1]) == at]
    return same[-1] if same else None


def listing_frame(
    found: list[tuple[str, datetime, str]], cache: dict[str, dict], fs: pafs.FileSystem, superseded: bool
) -> pd.DataFrame:
    """The `batches()` frame of listed entries, reading each file's footer facts once (into `cache`)."""
    kept = {e[2] for e in latest(found)}
    shown = [e for e in found if superseded or e[2] in kept]
    unread = [path for _, _, path in shown if path not in cache]
    if unread:
        with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(unread))) as pool:
            cache.update(zip(unread, pool.map(lambda path: footer_facts(fs, path), unread), strict=True))
    rows = []
    for as_of, written_at, path in shown:
        facts = cache[path]
        rows.append(
            {
                "as_of": pd.Timestamp(as_of),
                "written_at": pd.Timestamp(written_at),
                "accounts": int(facts.get("accounts", 0)),
                "churn_version": facts.get("churn_version", ""),
                "growth_version": facts.get("growth_version", ""),
                "path": path,
                "superseded": path not in kept,
            }
        )
    return pd.DataFrame(rows, columns=LISTING)


def footer_facts(fs: pafs.FileSystem, path: str) -> dict:
    """The batch facts `append_batch` wrote into a file's footer."""
    return json.loads((pq.read_metadata(path, filesystem=fs).metadata or {}).get(FACTS, b"{}"))


def account_rows(fs: pafs.FileSystem, path: str, account_id: str) -> pa.Table:
    """One account's rows in a batch file, reading only the row groups whose id range holds it."""
    with pq.ParquetFile(path, filesystem=fs) as batch:
        meta = batch.metadata
        column = meta.schema.to_arrow_schema().get_field_index("account_id")
        groups = [i for i in range(meta.num_row_groups) if may_hold(meta.row_group(i).column(column), account_id)]
        # Without the pandas metadata lookup a small row group reads ~5x faster; the file has no index to restore.
        found = batch.read_row_groups(groups, use_pandas_metadata=False)
    return found.filter(pc.equal(found["account_id"], account_id))


def may_hold(chunk: pq.ColumnChunkMetaData, account_id: str) -> bool:
    """Whether a row group's `account_id` statistics (min, max) leave room for the account."""
    stats = chunk.statistics
    return stats is None or not stats.has_min_max or stats.min <= account_id <= stats.max


def read_file(fs: pafs.FileSystem, path: str) -> pd.DataFrame:
    """A whole batch file as the score output frame."""
    return pq.read_table(path, filesystem=fs, partitioning=None).to_pandas()


def day(value) -> str:
    """An as-of date given as text, date or timestamp, as ISO text; a DataError for anything else."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"as-of {value!r} is not a date (use YYYY-MM-DD)") from exc
    if pd.isna(stamp):
        raise DataError(f"as-of {value!r} is not a date (use YYYY-MM-DD)")
    return stamp.date().isoformat()


def shown(root) -> str:
    """A history root as messages show it: the default place when None, any password redacted."""
    return settings.redact_uri(str(root) if root is not None else history_root())


def empty_message(root) -> str:
    """What an empty history says: where it was looked for, and how to fill it."""
    return f"score history {shown(root)} holds no batch yet: publish one with `tierwise score`"


def unknown_message(account_id: str, root, count: int) -> str:
    """What a read of an account no batch holds says."""
    return f"account {account_id!r} is in none of the {count} batch(es) of the score history {shown(root)}"
