"""Settings set in one place: where the MLflow store lives and where scores are kept.

Every entry point reads these, so a user changes a location once (by environment variable)
and the CLI, the trainer, the scorer and the service all follow. This module is a leaf: it
imports only the standard library, and importing it changes nothing (no environment
variable is set here), so `features`, `training` and `serving` may all read it without
pulling in the CLI.

Locations are relative to the folder tierwise runs in, as MLflow's own `./mlruns` is, never
to where the package is installed: an installed package's folder is shared by every user
and often read-only.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

SCORES_FILE = "latest_scores.parquet"
HISTORY_FOLDER = "score_history"
CONSOLE_DB_FILE = "console.db"
MONITOR_SUMMARY_FILE = "monitor_summary.json"


def mlruns_dir() -> Path:
    """The embedded MLflow folder, `./mlruns` in the working directory (`TIERWISE_MLRUNS` overrides)."""
    return Path(os.environ.get("TIERWISE_MLRUNS") or "mlruns").resolve()


def tracking_uri() -> str:
    """MLflow tracking URI: `MLFLOW_TRACKING_URI` if set, else sqlite under `mlruns/`.

    MLflow 3 refuses a bare file store, so the default is a sqlite database whose
    artifacts also live under `mlruns/`.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def artifact_root() -> str:
    """Where new experiments put their artifacts when the store is the embedded default."""
    return (mlruns_dir() / "artifacts").as_uri()


def redact_uri(text: str) -> str:
    """`text` with the password of every URI in it replaced by `***`, so it can be shown or logged.

    A tracking URI such as `postgresql://user:secret@host/db` ends up in error messages, log
    lines and service answers; `postgresql://user:***@host/db` still says which store is meant.
    Passwords given as query parameters (`?password=...`, `token=`, ...) are replaced too.
    """
    text = re.sub(r"(?P<head>[A-Za-z][\w+.-]*://[^\s/@:]*):[^\s/]*@", r"\g<head>:***@", text)
    keys = "password|passwd|pwd|secret|secret_key|token|session_token|api_key|access_key"
    return re.sub(rf"(?i)(?P<key>[?&;](?:{keys})=)[^&;\s]*", r"\g<key>***", text)


def scores_store() -> Path:
    """The latest-scores store the service reads, which belongs to the tracking store in use.

    Beside the sqlite database for a sqlite tracking store (`mlruns/latest_scores.parquet` by
    default); for any other store (a tracking server, PostgreSQL) a folder under `mlruns/scores/`
    named by a hash of the redacted URI, so a password change keeps the same store. Scoring
    against another tracking store (an experiment, a test) therefore writes elsewhere and never
    replaces the scores served for this one. `TIERWISE_SCORES_STORE` overrides.
    """
    if os.environ.get("TIERWISE_SCORES_STORE"):
        return Path(os.environ["TIERWISE_SCORES_STORE"]).resolve()
    db = sqlite_path(tracking_uri())
    if db is not None:
        return db.with_name(SCORES_FILE)
    key = hashlib.sha256(tracking_store().encode()).hexdigest()[:16]
    return mlruns_dir() / "scores" / key / SCORES_FILE


def score_history(store: Path | None = None) -> str:
    """Where every published score batch is kept: `score_history/` beside the latest-scores store.

    Beside the store, so the history belongs to the same tracking store as the batches it keeps.
    `TIERWISE_HISTORY` overrides it with a folder or an object-storage URL (`s3://bucket/prefix`,
    `gs://...`) that pyarrow's filesystem layer understands, so a team can keep it where every
    machine reads it.

    Args:
        store: the latest-scores store the history belongs to (default: `scores_store()`).
    """
    if os.environ.get("TIERWISE_HISTORY"):
        place = os.environ["TIERWISE_HISTORY"]
        return place if "://" in place else str(Path(place).resolve())
    return str((store or scores_store()).with_name(HISTORY_FOLDER))


def console_db() -> str:
    """The console's database (users, touches) as a SQLAlchemy URL: a SQLite file beside the store by default.

    `TIERWISE_CONSOLE_DB` overrides it with any SQLAlchemy URL, e.g. `postgresql+psycopg://user@host/db`
    for a team whose console runs on several replicas.
    """
    return os.environ.get("TIERWISE_CONSOLE_DB") or f"sqlite:///{scores_store().with_name(CONSOLE_DB_FILE)}"


def monitor_summary(store: Path | None = None) -> Path:
    """Where `tierwise monitor` leaves its latest summary: `monitor_summary.json` beside the latest-scores store.

    A monitor run takes minutes on a large book, far too long for a page view, so the console's
    Monitoring page reads the last run's summary from here. Beside the store, so it belongs to the same
    tracking store as the scores it judged. `TIERWISE_MONITOR_SUMMARY` overrides it with a file path.

    Args:
        store: the latest-scores store the summary belongs to (default: `scores_store()`).
    """
    if os.environ.get("TIERWISE_MONITOR_SUMMARY"):
        return Path(os.environ["TIERWISE_MONITOR_SUMMARY"]).resolve()
    return (store or scores_store()).with_name(MONITOR_SUMMARY_FILE)


def tracking_store() -> str:
    """The tracking store in use as recorded with what belongs to it: redacted, a sqlite path made absolute,
    a server's address without a trailing slash (`http://host:5000/` is `http://host:5000`)."""
    db = sqlite_path(tracking_uri())
    return f"sqlite:///{db}" if db is not None else redact_uri(tracking_uri()).rstrip("/")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative to the working directory, as SQLAlchemy has it), or None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).resolve()


def max_score_age_days() -> int:
    """The service answers lookups older than this many days with `stale: true` (`TIERWISE_MAX_SCORE_AGE_DAYS`)."""
    return int(os.environ.get("TIERWISE_MAX_SCORE_AGE_DAYS", "35"))


def reload_seconds() -> float:
    """How often the service checks for a new champion or score batch (`TIERWISE_RELOAD_SECONDS`)."""
    return float(os.environ.get("TIERWISE_RELOAD_SECONDS", "30"))


def promotion_wait_seconds() -> float:
    """How long a training waits for lower model versions to be decided before taking them as abandoned
    (`TIERWISE_PROMOTION_WAIT_SECONDS`, default 600: a decision takes seconds, so that long means a dead run)."""
    return float(os.environ.get("TIERWISE_PROMOTION_WAIT_SECONDS", "600"))


def policy_path() -> Path | None:
    """The tier policy the service proposes tiers with (`TIERWISE_POLICY`; None: the shipped default)."""
    return Path(os.environ["TIERWISE_POLICY"]) if os.environ.get("TIERWISE_POLICY") else None


def access_log() -> bool:
    """Whether the service logs a line per request (`TIERWISE_ACCESS_LOG=1`; `tierwise serve --access-log`)."""
    return os.environ.get("TIERWISE_ACCESS_LOG", "") not in ("", "0")


def max_unknown_account_share() -> float:
    """The share of a table's rows that may name accounts missing from `accounts` and be dropped with a
    warning (`TIERWISE_MAX_UNKNOWN_ACCOUNT_SHARE`, default 0.05); more is refused as a broken join key."""
    return float(os.environ.get("TIERWISE_MAX_UNKNOWN_ACCOUNT_SHARE", "0.05"))
