"""Settings set in one place: where the MLflow store lives and where scores are kept.

Every entry point reads these, so a user changes a location once (by environment variable)
and the CLI, the trainer, the scorer and the service all follow.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def mlruns_dir() -> Path:
    """The embedded MLflow folder: sqlite database plus artifacts (`TIERWISE_MLRUNS` overrides)."""
    return Path(os.environ.get("TIERWISE_MLRUNS", PROJECT_ROOT / "mlruns")).resolve()


def tracking_uri() -> str:
    """MLflow tracking URI: `MLFLOW_TRACKING_URI` if set, else sqlite under `mlruns/`.

    MLflow 3 refuses a bare file store, so the default is a sqlite database whose
    artifacts also live under `mlruns/`.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def artifact_root() -> str:
    """Where new experiments put their artifacts when the store is the embedded default."""
    return (mlruns_dir() / "artifacts").as_uri()


def scores_store() -> Path:
    """The latest-scores store the service reads (`TIERWISE_SCORES_STORE` overrides)."""
    return Path(os.environ.get("TIERWISE_SCORES_STORE", mlruns_dir() / "latest_scores.parquet")).resolve()


def max_score_age_days() -> int:
    """The service answers lookups older than this many days with `stale: true` (`TIERWISE_MAX_SCORE_AGE_DAYS`)."""
    return int(os.environ.get("TIERWISE_MAX_SCORE_AGE_DAYS", "35"))


def reload_seconds() -> float:
    """How often the service checks for a new champion or score batch (`TIERWISE_RELOAD_SECONDS`)."""
    return float(os.environ.get("TIERWISE_RELOAD_SECONDS", "30"))


def policy_path() -> Path | None:
    """The tier policy the service proposes tiers with (`TIERWISE_POLICY`; None: the shipped default)."""
    return Path(os.environ["TIERWISE_POLICY"]) if os.environ.get("TIERWISE_POLICY") else None


def access_log() -> bool:
    """Whether the service logs a line per request (`TIERWISE_ACCESS_LOG=1`; `tierwise serve --access-log`)."""
    return os.environ.get("TIERWISE_ACCESS_LOG", "") not in ("", "0")


def redact_uri(text: str) -> str:
    """`text` with the password of every URI in it replaced by `***`, so it can be shown or logged.

    A tracking URI such as `postgresql://user:secret@host/db` ends up in error messages, log
    lines and service answers; `postgresql://user:***@host/db` still says which store is meant.
    Passwords given as query parameters (`?password=...`, `token=`, ...) are replaced too.
    """
    import re

    text = re.sub(r"(?P<head>[A-Za-z][\w+.-]*://[^\s/@:]*):[^\s/]*@", r"\g<head>:***@", text)
    return re.sub(
        r"(?i)(?P<key>[?&;](?:password|passwd|pwd|secret|token|api_key|access_key)=)[^&;\s]*", r"\g<key>***", text
    )
