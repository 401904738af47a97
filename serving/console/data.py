"""What the console pages are drawn from, loaded once per score batch rather than per request.

A page must answer in tens of milliseconds on a 10,000-account book with a year of weekly
history, so nothing is read from disk per request: when the latest-scores store changes, the
latest batch, the batch before it and the history columns the charts need are loaded, and one
account's history becomes a slice of arrays sorted by account. Requests read the snapshot in
service; a new one replaces it whole (one reference assignment), as `serving.live` does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from features.tables import DataError
from serving.live import file_stamp
from serving.redact import public_text
from serving.report import risk_band
from serving.store import read_store
from tierwise import settings

logger = logging.getLogger("tierwise.console")

# What the account page's charts read from every batch: the rest of a batch stays on disk.
TREND_COLUMNS = (
    "churn_risk",
    "growth_potential",
    "tier",
    "churn_model_version",
    "growth_model_version",
    "activity_30d",
)
OWNER_COLUMNS = ("owner", "csm")  # the accounts-table column naming an account's CSM, first found wins
TEXT_COLUMNS = (  # shown as text, '' where missing (persona, play, gaps: '' in batches scored before them)
    "tier",
    "previous_tier",
    "segment",
    "persona",
    "play",
    "adoption_gaps",
    "pool",
    "lifecycle_stage",
    "reason_1",
    "changes",
)
CHECK_SECONDS = 2.0  # how often a request may look at the store's file for a new batch


@dataclass(frozen=True)
class Snapshot:
    """The batch in service and what the pages compare it with.

    Attributes:
        book: the latest batch, indexed by `account_id`, with `name` and `owner` ('' when the
            accounts table has none), `persona`, `play` and `adoption_gaps` ('' in older batches),
            `priority` (value at stake) and `band` (risk band) added.
        previous: the batch before it in the history (same index), or None when there is none.
        history: the score history, in memory (`serving.history.HistoryReader`); None when it cannot be read.
        as_of: the batch's as-of date, None when nothing has been scored yet.
        problem: why the store or the history could not be read, shown on every page; None when all is well.
    """

    book: pd.DataFrame
    previous: pd.DataFrame | None
    history: object | None  # serving.history.HistoryReader
    as_of: date | None
    stamp: tuple[int, int] | None
    problem: str | None = None
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    def once(self, key, make: Callable):
        """`make()`, worked out once per snapshot (per batch) and kept: what every request would recompute.

        Keys must come from a small set (a page name, a rounded threshold), never from free text.
        """
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def stale(self, max_age_days: int, today: date | None = None) -> bool:
        """Whether the batch is older than the service's freshness limit (`settings.max_score_age_days`)."""
        today = today or datetime.now(UTC).date()
        return self.as_of is not None and self.as_of < today - timedelta(days=max_age_days)

    def row(self, account_id: str, previous: bool = False) -> dict | None:
        """One account's row of the batch (or of the previous batch) as a dict; None when it is not there.

        Read from column arrays kept per snapshot: a DataFrame row lookup costs milliseconds on a wide book.
        """
        frame = self.previous if previous else self.book
        if frame is None:
            return None
        columns = self.once(("columns", previous), lambda: {c: frame[c].to_numpy() for c in frame.columns})
        positions = self.once(("positions", previous), lambda: dict(zip(frame.index, range(len(frame)), strict=True)))
        at = positions.get(account_id)
        return None if at is None else {c: values[at] for c, values in columns.items()}

    def trend(self, account_id: str) -> pd.DataFrame:
        """The account's rows in the history, oldest first (`TREND_COLUMNS`; no rows when it has none)."""
        if self.history is not None:
            try:
                return self.history.account(account_id)
            except DataError:  # an account the history has not seen (new in this batch)
                pass
        return pd.DataFrame(columns=["as_of", *TREND_COLUMNS])

    @property
    def has_owners(self) -> bool:
        """Whether the accounts table named an owner (CSM) for any account."""
        return self.once("has_owners", lambda: bool((self.book["owner"] != "").any()))


def empty_book() -> pd.DataFrame:
    """No scores yet: the columns the pages read, no rows."""
    frame = pd.DataFrame(columns=["account_id", "churn_risk", "arr", "arr_at_risk", "expected_expansion", "tier"])
    return shaped(frame)


def shaped(frame: pd.DataFrame) -> pd.DataFrame:
    """A batch as the pages read it: string ids as index, `name`, `owner`, `priority` and `band` added."""
    frame = frame.reset_index() if "account_id" not in frame.columns else frame.copy()
    frame.attrs = {}  # the store's record: pandas would deep-copy it on every operation of every request
    frame["account_id"] = frame["account_id"].astype(str)
    frame["name"] = text_column(frame, ("name",))
    frame["owner"] = text_column(frame, OWNER_COLUMNS)
    for column in ("churn_risk", "growth_potential", "arr", "arr_at_risk", "expected_expansion", "days_to_renewal"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else float("nan")
    frame["priority"] = frame["arr_at_risk"].fillna(0) + frame["expected_expansion"].fillna(0)
    frame["band"] = [risk_band(r) if r == r else "" for r in frame["churn_risk"].tolist()]
    for column in ("escalate", "insufficient_history", "onboarding_overflow"):
        values = frame[column] if column in frame else pd.Series(False, index=frame.index)
        frame[column] = values.astype(str).str.lower().isin(["true", "1"])
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), "") if column in frame else ""
    frame["renewal_date"] = pd.to_datetime(frame["renewal_date"]) if "renewal_date" in frame else pd.NaT
    for column in frame.columns:  # Arrow-backed text copies its buffers on every take; object columns copy pointers
        if pd.api.types.is_string_dtype(frame[column]) and frame[column].dtype != object:
            frame[column] = frame[column].astype(object)
    return frame.set_index("account_id", drop=False).rename_axis(None)


def text_column(frame: pd.DataFrame, names: tuple[str, ...]) -> pd.Series:
    """The first of `names` present, as text with blanks for missing values ('' everywhere when none is)."""
    for name in names:
        if name in frame:
            return frame[name].astype(object).where(frame[name].notna(), "").astype(str)
    return pd.Series("", index=frame.index, dtype=object)


def load_snapshot(store: Path, history) -> Snapshot:
    """Read the latest batch and the batch before it from the history.

    A store that cannot be read leaves an empty book with the reason in `problem`; a history
    that cannot be read leaves the book served without trends, and says so.

    Args:
        history: a `serving.history.HistoryReader`, or None when the history is not to be read.
    """
    stamp = file_stamp(store)
    if stamp is None:
        return Snapshot(empty_book(), None, None, None, None, None)
    try:
        book = shaped(read_store(store))
    except (DataError, OSError, ValueError) as exc:
        return Snapshot(empty_book(), None, None, None, stamp, f"scores store: {public_text(exc)}")
    as_of = pd.to_datetime(book["as_of"]).max().date() if len(book) and "as_of" in book else None
    if history is None or as_of is None:
        return Snapshot(book, None, None, as_of, stamp)
    try:
        history.refresh(force=True)
        previous = history.previous(as_of)
    except Exception as exc:  # a torn or foreign history must not take the book down with it
        logger.error("console: cannot read the score history: %s", public_text(exc))
        return Snapshot(book, None, None, as_of, stamp, f"score history: {public_text(exc)}")
    return Snapshot(book, None if previous is None else shaped(previous), history, as_of, stamp)


class SnapshotCache:
    """The snapshot in service, replaced when the latest-scores store's file changes.

    A request looks at the file at most every `CHECK_SECONDS`; the reload runs under a lock in
    the request that noticed it (the others keep answering from the old snapshot). The history
    reader is made once and keeps itself current (it reloads only batches it has not seen).
    """

    def __init__(self, store: Callable[[], Path] = settings.scores_store, history: bool = True) -> None:
        self.store = store
        self.history = history
        self.reader = None
        self.snapshot: Snapshot | None = None
        self.checked = 0.0
        self.lock = threading.Lock()

    def current(self) -> Snapshot:
        """The snapshot of the batch in the store now (loaded on first use and when the file changed)."""
        snapshot = self.snapshot
        if snapshot is not None and time.monotonic() - self.checked < CHECK_SECONDS:
            return snapshot
        with self.lock:
            self.checked = time.monotonic()
            path = self.store()
            if self.snapshot is None or file_stamp(path) != self.snapshot.stamp:
                self.snapshot = load_snapshot(path, self.history_reader(path))
            return self.snapshot

    def history_reader(self, store: Path):
        """The history beside this store (`serving.history.HistoryReader`), made once; None when off or unreadable."""
        if not self.history:
            return None
        if self.reader is None:
            from serving.history import HistoryReader, history_root

            try:
                self.reader = HistoryReader(history_root(store), columns=TREND_COLUMNS, recheck_seconds=CHECK_SECONDS)
            except DataError as exc:
                logger.error("console: cannot open the score history: %s", public_text(exc))
                return None
        return self.reader
