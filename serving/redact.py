"""What the service may show of an error: one line, no credentials, no file-system paths, no stack.

Errors the service meets (an unreachable tracking store, a torn model download, an unreadable
score file) carry text from MLflow, SQLAlchemy or the OS: the tracking URI with its password,
absolute paths of the host, sometimes several lines of detail. Callers of the API and readers of
its log need to know what failed, not how the host is laid out, so every such text goes through
`public_text` before it reaches an answer, the reload status or a log line.
"""

from __future__ import annotations

import logging
import re

from tierwise.settings import redact_uri

# An absolute path (optionally as a file: or sqlite: URI) up to its last part; a URL's host/path is left alone.
FOLDERS = re.compile(r"(?<![\w@:/.~-])(?:(?:file|sqlite):)?/+(?:[^\s/'\"(),;:\[\]]+/)+")
MAX_CHARS = 300


def public_text(error: BaseException | str) -> str:
    """An error as the service shows it: its first line, credentials redacted, folders of paths dropped.

    `/srv/tierwise/mlruns/latest_scores.parquet` becomes `…/latest_scores.parquet`, which still
    names the file; `postgresql://user:secret@host/db` becomes `postgresql://user:***@host/db`.
    """
    text = str(error).strip() or type(error).__name__
    first = text.splitlines()[0]
    return FOLDERS.sub("…/", redact_uri(first))[:MAX_CHARS]


def client_error(error: BaseException | None) -> bool:
    """Whether an exception BentoML logs is the caller's mistake (a body that failed validation), not a bug."""
    import pydantic
    from bentoml.exceptions import BentoMLException

    if isinstance(error, pydantic.ValidationError):
        return True
    return isinstance(error, BentoMLException) and int(error.error_code) < 500


class RedactingFilter(logging.Filter):
    """A log filter that redacts credentials from every record and keeps callers' mistakes to one line.

    BentoML logs every request that failed validation at ERROR with a full traceback: a fuzzer
    or a misbehaving client would fill the log with stacks of someone else's bad JSON. Those
    become one line; a real bug (a 500) keeps its traceback, credentials redacted, since the
    log is where it gets fixed from.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact_uri(record.getMessage())
        if record.exc_info and client_error(record.exc_info[1]):
            message = f"{message}: bad request: {public_text(record.exc_info[1])}"
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"  # the caller's error, not ours
        elif record.exc_info:
            record.exc_text = redact_uri(logging.Formatter().formatException(record.exc_info))
        record.msg, record.args = message, None
        return True

    @classmethod
    def install(cls) -> None:
        """Put the filter on every log handler configured so far (BentoML configures them before the service)."""
        loggers = [
            logging.getLogger(),
            *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
        ]
        for handler in {h for lg in loggers for h in lg.handlers}:
            if not any(isinstance(f, cls) for f in handler.filters):
                handler.addFilter(cls())
