"""The latest-scores store: the last batch's output, which the service answers lookups from.

One Parquet file, replaced whole by an atomic rename (`features.io.write_table`), so a reader
sees either the previous batch or the new one, never a mix or half a file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.io import read_user_table, write_table
from features.tables import DataError
from tierwise import settings


def write_store(scored: pd.DataFrame, path: Path | None = None) -> Path:
    """Replace the store with a scored batch; returns where it was written."""
    return write_table(scored, path or settings.scores_store())


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
