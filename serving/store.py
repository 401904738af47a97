"""The latest-scores store: the last published batch, which the service answers lookups from.

One Parquet file, replaced whole by an atomic rename (`features.io.write_table`), so a reader
sees either the previous batch or the new one, never a mix or half a file.

The store belongs to one tracking store (`settings.scores_store` derives its place from it)
and records, in the Parquet file's own metadata, which tracking store, as-of date and model
versions its batch came from: the record is replaced together with the rows it describes. A
batch replaces the store (is published) by default only when it holds the champions' scores
of the newest as-of date for the same tracking store; anything else (a challenger, an older
date, an experiment against another store) is written to its output file only. Every published
batch is also appended to the score history (`serving.history`), which keeps them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from features.io import read_user_table, write_table
from features.tables import DataError
from tierwise import settings

RECORD = "tierwise_store"  # the key of the store's record in the Parquet file's pandas attributes


@dataclass(frozen=True)
class Publication:
    """Whether a batch replaced the served scores, which store that is, and why (or why not)."""

    store: Path
    published: bool
    reason: str

    def sentence(self) -> str:
        """What `tierwise score` tells the user about the store."""
        if self.published:
            return f"published to the latest-scores store {self.store} ({self.reason})"
        return f"NOT published to the latest-scores store {self.store}: {self.reason}"


def publish(
    scored: pd.DataFrame, wanted: bool | None, not_champion: str | None, path: Path | None = None
) -> Publication:
    """Replace the store with a scored batch when the publish rules (or the user) say so.

    Args:
        scored: the batch, with `as_of` and the model version columns.
        wanted: `--publish` (True), `--no-publish` (False), or None for the rules.
        not_champion: why the batch's models are not the champions, or None when they are.
        path: the store (default: `settings.scores_store()`).
    """
    path = path or settings.scores_store()
    if wanted is False:
        return Publication(path, False, "--no-publish")
    if wanted is None:
        why_not = not_champion or refusal(scored, path)
        if why_not:
            return Publication(path, False, f"{why_not}; pass --publish to publish anyway")
    from serving.history import append_batch, history_root  # history builds on this module: imported when used

    append_batch(scored, history_root(path))  # first: every batch the store ever served is in the history
    write_store(scored, path)
    return Publication(path, True, "--publish" if wanted else "champion scores of the newest as-of date")


def refusal(scored: pd.DataFrame, path: Path) -> str | None:
    """Why the store should keep its batch rather than take this one, or None."""
    held = record(path)
    if held is None:
        return None
    if held.get("tracking_store") != settings.tracking_store():
        return f"it holds the scores of another tracking store ({held.get('tracking_store')})"
    if batch_as_of(scored) < held.get("as_of", ""):
        return f"this batch (as of {batch_as_of(scored)}) is older than the published one (as of {held['as_of']})"
    return None


def record(path: Path) -> dict | None:
    """What the store records about its batch (tracking store, as-of, model versions), or None.

    None when there is no store, when it cannot be read (a broken store may be replaced), or
    when it was written before stores kept a record.
    """
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path, columns=[]).attrs.get(RECORD)
    except Exception:  # any unreadable file: there is nothing worth keeping in it
        return None


def batch_as_of(scored: pd.DataFrame) -> str:
    """The batch's as-of date, ISO (the latest when rows mix dates)."""
    return pd.Timestamp(scored["as_of"].max()).date().isoformat()


def model_versions(scored: pd.DataFrame) -> dict[str, list[str]]:
    """The model versions that scored a batch, by target: `{"churn": ["3"], "growth": ["2"]}`."""
    return {
        target: sorted(map(str, scored[column].dropna().unique()))
        for target, column in (("churn", "churn_model_version"), ("growth", "growth_model_version"))
        if column in scored.columns
    }


def write_store(scored: pd.DataFrame, path: Path | None = None) -> Path:
    """Replace the store with a scored batch and its record; returns where it was written."""
    versions = model_versions(scored)
    stamped = scored.copy(deep=False)
    stamped.attrs = {
        RECORD: {
            "tracking_store": settings.tracking_store(),
            "as_of": batch_as_of(scored),
            "model_versions": versions,
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    }
    return write_table(stamped, path or settings.scores_store())


def read_store(path: Path | None = None) -> pd.DataFrame:
    """The latest scores indexed by `account_id`.

    Raises:
        DataError: nothing has been scored yet, or the file is not a scores store.
    """
    path = path or settings.scores_store()
    if not path.exists():
        raise DataError(f"no scores at {path}: run `tierwise score` first")
    scores = read_user_table(path, "scores store", ("account_id",))
    return scores.set_index("account_id")
