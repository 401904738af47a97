"""Tables at object-storage URLs (`s3://`, `gs://`, `abfs://`, `hdfs://`), read and written through pyarrow.

A team past one machine keeps its exports in a bucket, not a folder. pyarrow's filesystem layer
(in the wheel we already install) speaks S3, GCS, Azure and HDFS with the providers' usual
credentials (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL` for an S3-compatible store, ...), so neither
engine needs a cloud SDK of its own. An object is written in one upload, which the store makes
visible only once complete; outputs are uploaded under a temporary name and moved into place, as
local files are renamed, so a reader never sees half an output.
`file://` URLs are local paths and go through the local, renaming writer.
"""

from __future__ import annotations

import contextlib
import io
import re
import uuid
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

import pandas as pd

from features.errors import DataError
from tierwise.settings import redact_uri


def is_url(location: Path | str) -> bool:
    """Whether a data or output location is a URL rather than a local path."""
    return "://" in str(location)


def local_path(location: Path | str) -> Path | None:
    """The local path of a plain path or a `file://` URL; None for a remote URL."""
    if not is_url(location):
        return Path(location)
    parts = urlsplit(str(location))
    return Path(unquote(parts.path)) if parts.scheme == "file" and parts.netloc in ("", "localhost") else None


def url_suffix(url: str) -> str:
    """The file suffix of a URL's path (`.parquet`), whatever query follows it."""
    return PurePosixPath(urlsplit(url).path).suffix


def child(base: str, name: str) -> str:
    """`base/name`, keeping a query (`?endpoint_override=...`) after the path."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))


def filesystem(url: str):
    """pyarrow's filesystem for a URL and the path in it; a DataError for a scheme pyarrow cannot reach."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:  # Hadoop's names for S3 (Spark reads `s3a://`) are the same bucket to pyarrow
        return pafs.FileSystem.from_uri(re.sub(r"^s3[an]://", "s3://", url))
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{redact_uri(url)}: cannot reach it: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (pyarrow's and Spark's run on)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def find_table(base: str, name: str, suffixes: tuple[str, ...]) -> str:
    """The URL of `name.parquet` or `name.csv` under a URL, or a DataError saying which is missing."""
    import pyarrow.fs as pafs

    for suffix in suffixes:
        url = child(base, f"{name}{suffix}")
        fs, path = filesystem(url)
        try:
            if fs.get_file_info(path).type != pafs.FileType.NotFound:
                return url
        except OSError as exc:
            raise DataError(f"{name}: cannot reach {redact_uri(url)}: {first_line(exc)}") from exc
    raise DataError(f"{name}: table missing, expected {name}.csv or {name}.parquet under {redact_uri(base)}")


def read_url_table(url: str, name: str) -> pd.DataFrame:
    """A CSV or Parquet table at a URL, as pandas reads the local files; a DataError naming it if unreadable."""
    import pyarrow.parquet as pq

    fs, path = filesystem(url)
    try:
        if url_suffix(url) == ".csv":
            with fs.open_input_stream(path) as stream:
                return pd.read_csv(stream, low_memory=False)
        return pq.read_table(path, filesystem=fs).to_pandas()
    except Exception as exc:  # a corrupt file is user input too
        raise DataError(f"{name}: cannot read {redact_uri(url)}: {first_line(exc)}") from exc


def write_url_table(frame: pd.DataFrame, url: str, to_csv) -> str:
    """Write a table to a URL whole or not at all (`to_csv` writes the CSV flavour); a DataError naming it on failure.

    As with local files, the table is uploaded under a temporary name beside the target and moved
    into place once complete (a server-side copy on object stores), so a failed upload leaves at
    most a hidden `.tmp` object, never a truncated table under the real name.
    """
    buffer = io.BytesIO()
    if url_suffix(url) == ".csv":
        to_csv(frame, buffer)
    else:
        frame.to_parquet(buffer, index=False)
    fs, path = filesystem(url)
    folder, _, name = path.rpartition("/")
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        with fs.open_output_stream(tmp) as stream:
            stream.write(buffer.getvalue())
        fs.move(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            fs.delete_file(tmp)
        raise DataError(f"cannot write {redact_uri(url)}: {first_line(exc)}") from exc
    return url
