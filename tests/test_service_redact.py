"""What the service shows of errors: credentials redacted, no folders, one line, one shape (fast, no server)."""

from __future__ import annotations

import io
import logging

import orjson
import pydantic
import pytest

from serving.errors import error_body, field_name
from serving.redact import RedactingFilter, public_text
from tierwise.settings import redact_uri


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
        ("mysql+pymysql://u:p@ss@db.internal:3306/mlflow", "mysql+pymysql://u:***@db.internal:3306/mlflow"),
        ("cannot connect to postgresql://:secret@host/db now", "cannot connect to postgresql://:***@host/db now"),
        (
            "postgresql://host/db?user=u&password=secret&sslmode=require",
            "postgresql://host/db?user=u&password=***&sslmode=require",
        ),
        ("https://user@host/path", "https://user@host/path"),  # no password, nothing to hide
        ("sqlite:////srv/mlruns/mlflow.db", "sqlite:////srv/mlruns/mlflow.db"),  # a path is not a credential
    ],
)
def test_redact_uri_hides_passwords_only(text, shown):
    assert redact_uri(text) == shown


def test_public_text_keeps_one_line_no_folder_and_no_password():
    error = OSError("[Errno 2] No such file or directory: '/srv/tierwise/mlruns/latest_scores.parquet'\nmore detail")
    assert public_text(error) == "[Errno 2] No such file or directory: '…/latest_scores.parquet'"
    assert public_text("store sqlite:////srv/m/mlflow.db and file:///srv/x/y.db") == "store …/mlflow.db and …/y.db"
    assert public_text("in postgresql://user:secret@host/db") == "in postgresql://user:***@host/db"
    assert public_text("see https://sqlalche.me/e/20/e3q8") == "see https://sqlalche.me/e/20/e3q8"
    assert public_text(ValueError()) == "ValueError" and len(public_text("x" * 1000)) == 300


def logged(record_error: BaseException | None, message: str) -> str:
    """What a handler with the filter writes for one record (exc_info set as BentoML sets it)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tierwise.test-redact")
    logger.addHandler(handler)
    try:
        try:
            if record_error is not None:
                raise record_error
            logger.error(message)
        except BaseException:
            logger.error(message, exc_info=True)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_the_log_filter_keeps_bad_requests_to_one_line_and_redacts_everything():
    try:
        pydantic.TypeAdapter(int).validate_python("x")
    except pydantic.ValidationError as exc:
        invalid = exc
    text = logged(invalid, "Exception on /lookup [POST]")
    assert text.startswith("WARNING Exception on /lookup [POST]: bad request:") and text.count("\n") == 1
    bug = logged(RuntimeError("boom at postgresql://u:secret@h/db"), "Exception on /score [POST]")
    assert "Traceback" in bug and "secret" not in bug and "u:***@h" in bug  # a bug keeps its stack, redacted
    assert "secret" not in logged(None, "store postgresql://u:secret@h/db is down")


def test_error_bodies_come_out_in_one_shape():
    validation = {
        "error": "2 validation errors for Input",
        "detail": [{"type": "missing", "loc": ["rows", 0, "as_of"], "msg": "Field required"}, {"loc": []}],
    }
    shaped = error_body(400, orjson.dumps(validation))
    assert shaped["error"] == "rows[0].as_of: Field required (and 1 more problem(s))"
    assert shaped["field"] == "rows[0].as_of" and shaped["detail"] == validation["detail"]
    assert error_body(404, b"Not Found") == {"error": "Not Found"}
    assert error_body(415, orjson.dumps([{"error": "pickle not allowed"}])) == {"error": "pickle not allowed"}
    assert error_body(500, b"") == {"error": "HTTP 500"}
    ours = {"error": "unknown account_id: X", "unknown": ["X"]}
    assert error_body(404, orjson.dumps(ours)) == ours
    assert field_name(["account_ids", 3]) == "account_ids[3]" and field_name([]) is None
