"""Write tables the way every tierwise output is written: whole or not at all.

A reader (a spreadsheet, the service, the next run) must never see half a file, so each
write goes to a temporary file in the same folder and is renamed into place. CSV cells that a
spreadsheet would run as a formula are defused, since account data comes from customers.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from pyarrow.fs import FileType

from features.errors import DataError
from features.urls import filesystem, first_line, is_url, local_path, url_suffix, write_url_table
from tierwise.settings import redact_uri

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TABLE_SUFFIXES = (".csv", ".parquet")


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it is removed.

    Permissions follow the umask (mkstemp alone would make shared outputs owner-only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def output_file(path: Path | str, suffixes: tuple[str, ...] = TABLE_SUFFIXES, what: str = "output") -> Path | str:
    """The path an output will be written to, or a DataError saying why it cannot be, before any work is done.

    A missing parent folder is not an error: `atomic_path` creates it when the output is
    written (as `mkdir -p` would). Refused: a suffix not in `suffixes`, a path that is a
    folder, a file standing where a parent folder should be, a parent folder not writable.
    An object-storage URL is returned as it is (`features.urls`), a `file://` URL as its path.
    """
    if is_url(path) and local_path(path) is None:
        return remote_output(str(path), suffixes, what)
    path = local_path(path)
    if path.suffix not in suffixes:
        raise DataError(f"{what} {path}: use a {' or '.join(suffixes)} file name")
    if path.is_dir():
        raise DataError(f"{what} {path}: is a folder; give a file name")
    return writable_folder(path, path.parent, what)


def remote_output(url: str, suffixes: tuple[str, ...], what: str) -> str:
    """An object-storage URL an output can go to: a known suffix, a scheme pyarrow knows, a bucket that exists."""
    if url_suffix(url) not in suffixes:
        raise DataError(f"{what} {redact_uri(url)}: use a {' or '.join(suffixes)} file name")
    fs, path = filesystem(url)
    bucket = path.split("/")[0]
    try:
        missing = fs.get_file_info(bucket).type == FileType.NotFound
    except OSError as exc:  # no credentials, no route: before the work, not after it
        raise DataError(f"{what} {redact_uri(url)}: cannot reach it: {first_line(exc)}") from exc
    if missing:
        raise DataError(f"{what} {redact_uri(url)}: the bucket {bucket!r} does not exist")
    return url


def output_folder(path: Path | str, what: str = "output") -> Path:
    """A folder outputs will be written into (created later if missing), or a DataError saying why it cannot be."""
    return writable_folder(Path(path), Path(path), what)


def writable_folder(path: Path, folder: Path, what: str) -> Path:
    """`path` when `folder` exists as a writable folder or can be created, else a DataError naming `path`."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise DataError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{what} {path}: cannot write in {existing} (permission denied)")
    return path


def write_table(frame: pd.DataFrame, path: Path | str) -> Path | str:
    """Write CSV (spreadsheet-safe) or Parquet, chosen by the extension, atomically; returns the path or URL."""
    path = output_file(path)
    if isinstance(path, str):  # object storage
        return write_url_table(frame, path, lambda table, buffer: spreadsheet_safe(table).to_csv(buffer, index=False))
    with atomic_path(path) as tmp:
        if path.suffix == ".csv":
            spreadsheet_safe(frame).to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return path


def write_text(text: str, path: Path | str) -> Path:
    """Write a text file (a report) atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_user_table(path: Path | str, what: str, needed: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV or Parquet file a user handed in, or a DataError naming the file and what is wrong.

    Args:
        path: the file; its extension picks the reader.
        what: how the message names the file ("previous scores", "--table", ...).
        needed: columns that must be there; the first is an id and is read from CSV as text ("007").
    """
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise DataError(f"{what} {path}: use a .csv or .parquet file")
    if not path.is_file():
        raise DataError(f"{what} {path}: file not found (it does not exist)")
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype={c: str for c in needed[:1]}, low_memory=False)
        else:
            frame = pd.read_parquet(path)
    except Exception as exc:  # a corrupt file is user input too
        raise DataError(f"{what} {path}: cannot read it: {exc}") from exc
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:12]))
        raise DataError(f"{what} {path}: missing column(s) {', '.join(missing)}; found {found}")
    if frame.empty:
        raise DataError(f"{what} {path}: the table has no rows")
    return frame


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that start like a formula with a quote, so Excel shows them as text."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_string_dtype(out[col]) or out[col].dtype == object:
            text = out[col].astype("string")
            risky = text.str.startswith(FORMULA_STARTS).fillna(False)
            if risky.any():
                out[col] = text.where(~risky, "'" + text)
    return out
