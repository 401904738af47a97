"""What the service answers from, kept current without a restart.

The service holds two things: the champion models (for `/score`) and the latest-scores store
(for `/lookup` and as the book a posted row's tier is proposed against). Both are replaced
while the service runs: a new champion is registered, `tierwise score` writes a new batch. A
background thread polls for either (and `/reload` checks at once); whatever changed is loaded
off the request path and swapped in with one reference assignment, so a request in flight
keeps the snapshot it started with. A load that fails leaves the previous state serving and
is recorded (and exposed by `/model_info`) instead of raised. A service whose tracking store
cannot be reached at start starts anyway, not ready (`/readyz` 503), and keeps trying. Error
texts pass through `serving.redact.public_text`: no password, path or stack reaches a caller or the log.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from features.tables import DataError
from serving import registry
from serving.redact import public_text
from serving.store import read_store
from serving.tiers import REQUIRED as TIERING_COLUMNS
from serving.tiers import Standing, check_scored, held_tiers
from tierwise import settings

logger = logging.getLogger("tierwise.service")

REASON_TEXT = re.compile(r"^(growth_)?reason_\d+$")  # the same drivers as `reasons`, flattened for spreadsheets


def now_iso() -> str:
    """The current UTC time, to the second, for status records."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Book:
    """The latest-scores store as the service answers from it.

    Attributes:
        answers: account id -> its lookup answer (JSON-ready; `stale` is added per request).
        previous: the stored columns `changes` compares a posted row with (account id, risk,
            reasons) and the persona it holds (hysteresis), as arrays.
        standing: the stored accounts as tiering reads them, so a posted row's tier is proposed
            by re-ranking arrays (`serving.online.with_proposals`).
        as_of: the as-of date of the batch (the latest when the store mixes dates).
        model_versions: the model versions the batch was scored with.
        stamp: (modification time, size) of the file when read, to notice a new batch.
    """

    path: Path
    answers: dict[str, dict]
    previous: dict[str, np.ndarray]
    standing: Standing
    as_of: str | None
    model_versions: dict[str, str | None]
    stamp: tuple[int, int] | None
    loaded_at: str

    @classmethod
    def empty(cls, path: Path) -> Book:
        """No scores yet (`tierwise score` has not run): lookups answer 503 until a batch appears."""
        nothing = pd.DataFrame(columns=list(TIERING_COLUMNS))
        return cls(
            path,
            {},
            stored_columns(nothing),
            held_standing(nothing),
            None,
            {"churn": None, "growth": None},
            None,
            now_iso(),
        )


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(modification time in ns, size) of a file, or None when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def read_book(path: Path) -> Book:
    """Read the latest-scores store into lookup answers keyed by account id.

    Raises:
        DataError: the file is not a readable scores table.
    """
    stamp = file_stamp(path)
    if stamp is None:
        return Book.empty(path)
    frame = read_store(path).reset_index()
    if "as_of" not in frame.columns:
        raise DataError(f"latest-scores store {path.name}: missing column(s) as_of")
    try:
        check_scored(frame)
    except DataError as exc:
        raise DataError(f"latest-scores store {path.name}: {exc}") from exc
    frame["account_id"] = frame["account_id"].astype(str)
    versions = {
        "churn": last_value(frame, "churn_model_version"),
        "growth": last_value(frame, "growth_model_version"),
    }
    return Book(
        path=path,
        answers=lookup_answers(frame),
        previous=stored_columns(frame),
        standing=held_standing(frame),
        as_of=str(pd.to_datetime(frame["as_of"]).max().date()) if len(frame) else None,
        model_versions=versions,
        stamp=stamp,
        loaded_at=now_iso(),
    )


def stored_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The columns `changes` reads, as arrays (reasons only where the batch had them)."""
    return {c: frame[c].to_numpy() for c in ("account_id", "churn_risk", "reasons_json", "persona") if c in frame}


def held_standing(rows: pd.DataFrame) -> Standing:
    """The stored accounts as tiering reads them, each holding its stored tier."""
    tier = held_tiers(rows["tier"]) if "tier" in rows else np.full(len(rows), None, dtype=object)
    return Standing.of(rows, tier)


def last_value(frame: pd.DataFrame, column: str) -> str | None:
    """The column's value on the last row as text (model versions are the same on every row of a batch)."""
    if column not in frame or frame.empty or pd.isna(frame[column].iloc[-1]):
        return None
    return str(frame[column].iloc[-1])


def lookup_answers(scored: Mapping[str, Sequence]) -> dict[str, dict]:
    """One JSON-ready answer per account: every stored column, dates as YYYY-MM-DD, reasons as lists.

    `scored` is a frame or arrays by column name. `reasons` holds the churn and growth drivers
    (text, points, value, actionable) from `reasons_json`; the per-family points kept there for
    "what changed" are left out.

    Built once per batch so a lookup is a dict access plus JSON encoding; built column by
    column from arrays, so answering a posted row costs well under a millisecond too.
    """
    columns = [c for c in scored if c != "reasons_json" and not REASON_TEXT.match(c)]
    values = [json_values(scored[c]) for c in columns]
    reasons = list(scored["reasons_json"]) if "reasons_json" in scored else [None] * len(values[0])
    answers = {}
    for row, text in zip(zip(*values, strict=True), reasons, strict=True):
        record = dict(zip(columns, row, strict=True))
        parsed = orjson.loads(text) if isinstance(text, str) and text else {}
        record["reasons"] = {"churn": parsed.get("churn", []), "growth": parsed.get("growth", [])}
        answers[record["account_id"]] = record
    return answers


def json_values(column: Sequence) -> list:
    """A column as plain Python values JSON can carry: dates as YYYY-MM-DD, anything missing as None."""
    values = np.asarray(column)
    if values.dtype.kind == "M":
        return [None if v == "NaT" else v for v in np.datetime_as_string(values, unit="D").tolist()]
    missing = pd.isna(values)
    return [None if gone else v for v, gone in zip(values.tolist(), missing.tolist(), strict=True)]


def stale_before(max_age_days: int, today: date | None = None) -> str:
    """The earliest as-of date (YYYY-MM-DD) still fresh: scores as of an earlier day are stale."""
    return str((today or datetime.now(UTC).date()) - timedelta(days=max_age_days))


@dataclass
class LiveState:
    """The models and the book in service now, plus the record of the last reload attempts.

    `models` and `book` are only ever replaced whole, so readers need no lock; `refresh` holds
    a lock so that the poller and `/reload` never load the same thing twice at once. `models`
    is None until the champions could be loaded once (the tracking store was unreachable).
    """

    models: registry.Models | None
    book: Book
    status: dict = field(default_factory=dict)
    failed_versions: tuple[str, str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls) -> LiveState:
        """Load the champions and the store; what cannot be loaded yet is recorded and retried at each poll.

        The service starts not ready rather than not at all when the tracking store is down (a
        database that starts after the service, a network blip): `/readyz` answers 503 until the
        champions load. `tierwise serve` checks the store before starting, so a wrong URI on the
        command line still fails at once.
        """
        path = settings.scores_store()
        try:
            book = read_book(path)
        except DataError as exc:  # a bad store must not keep scoring down; lookups say what is wrong
            logger.error("%s", public_text(exc))
            book = Book.empty(path)
        state = cls(models=None, book=book)
        state.status = {
            "models": {"ok": False, "at": now_iso(), "versions": state.versions, "error": "not loaded yet"},
            "scores": {"ok": book.stamp is not None, "at": now_iso(), "error": None if book.stamp else "no scores yet"},
        }
        state.refresh_models(force=True)
        return state

    @property
    def versions(self) -> dict[str, str | None]:
        """The registry versions of the models in service (None before any model loaded)."""
        if self.models is None:
            return {"churn": None, "growth": None}
        return {"churn": self.models.churn_version, "growth": self.models.growth_version}

    @property
    def serving_now(self) -> str:
        """Which models answer `/score` while a new champion cannot be loaded, in words."""
        if self.models is None:
            return "no models in service yet"
        return f"still serving churn v{self.models.churn_version} / growth v{self.models.growth_version}"

    def refresh(self, force: bool = False) -> dict:
        """Load a new champion and/or a new score batch if there is one; returns the reload status.

        Args:
            force: retry a champion that failed to load before (a poll skips it until it changes).
        """
        with self.lock:
            self.refresh_models(force)
            self.refresh_book()
            return self.status

    def refresh_models(self, force: bool) -> None:
        """Swap in the champions when their versions moved; on failure keep the old ones and record why."""
        wanted = None
        try:
            registry.mlflow.set_tracking_uri(settings.tracking_uri())
            wanted = (registry.resolve_version(registry.CHURN, None), registry.resolve_version(registry.GROWTH, None))
            if wanted == tuple(self.versions.values()):
                return
            if wanted == self.failed_versions and not force and self.models is not None:
                return  # retried when the alias moves or on /reload; with nothing in service, at every poll
            models = registry.load_models(*wanted)
        except Exception as exc:  # any failure (registry down, torn artifacts, bad booster) keeps the old models
            self.failed_versions = wanted
            self.status["models"] = {
                "ok": False,
                "at": now_iso(),
                "versions": self.versions,
                "error": f"new champion not loaded, {self.serving_now}: {public_text(exc)}",
            }
            logger.error("%s", self.status["models"]["error"])
            return
        self.models, self.failed_versions = models, None
        self.status["models"] = {"ok": True, "at": now_iso(), "versions": self.versions, "error": None}
        logger.info("new champion in service: churn v%s, growth v%s", *wanted)

    def refresh_book(self) -> None:
        """Re-read the store when its file changed; on failure keep the old book and record why."""
        path = settings.scores_store()
        if file_stamp(path) == self.book.stamp and path == self.book.path:
            return
        try:
            book = read_book(path)
        except Exception as exc:  # a torn or foreign file of any kind keeps the last batch serving
            error = f"{public_text(exc)}; still serving the last batch"
            self.status["scores"] = {"ok": False, "at": now_iso(), "error": error}
            logger.error("%s", self.status["scores"]["error"])
            return
        self.book = book
        self.status["scores"] = {"ok": book.stamp is not None, "at": now_iso(), "error": None}
        logger.info("score batch in service: %s accounts as of %s", len(book.answers), book.as_of)

    def poll_forever(self, interval: float) -> threading.Thread:
        """Start a daemon thread that calls `refresh` every `interval` seconds."""

        def loop() -> None:
            while True:
                time.sleep(interval)
                try:
                    self.refresh()
                except Exception:  # never let the poller die; refresh records its own failures
                    logger.exception("reload check failed")

        thread = threading.Thread(target=loop, name="tierwise-reload", daemon=True)
        thread.start()
        return thread
