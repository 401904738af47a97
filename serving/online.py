"""On-demand scoring of posted feature rows: validation, the one scoring path, tier proposals.

The service turns posted rows into the feature arrays `serving.scoring.score_columns` takes (the
scoring the batch job runs, so a posted row scores exactly as the batch would score it), after
checking each row against the features the models in service were trained on, so a bad value
is answered 400 naming `rows[i].feature` rather than scored as missing.

A single posted row cannot be ranked by capacity on its own, so its tier is a proposal: the row
is put into the current book (the latest-scores store, replacing that account's stored row) and
the book is tiered again with the same policy, hysteresis against the stored tiers included
(on the arrays `serving.tiers.Standing` keeps per score batch, so it costs microseconds).
The answer says which book (as-of date, size) the proposal was made against.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime

import numpy as np

from features.build import INFO
from features.tables import DataError
from serving.live import Book, lookup_answers
from serving.registry import Models
from serving.scoring import OUTPUT, score_columns
from serving.tiers import Standing, TierPolicy, labels, place

OPTIONAL = ("as_of", *INFO)  # INFO: given per row, derived from the features where null


class RowError(DataError):
    """A posted row the models cannot score; `field` names it (`rows[2].seats`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def checked_rows(rows: list[dict], models: Models, today: date | None = None) -> list[dict]:
    """Posted rows as the models read them, after checking every model feature is present and typed.

    Numbers may be null (a missing value, as in the batch features), never NaN, infinite or too
    large for a float; categories are text or null, and unseen categories score as missing, as in
    the batch. ARR may not be null or negative: the value at stake and so the tier need it (the
    batch refuses such rows too). `as_of` defaults to today.

    Raises:
        RowError: a feature is missing, a number is not a finite number, a category is not text,
            ARR is missing or negative, or an account appears twice; the message names `rows[i].field`.
    """
    seen: dict[str, int] = {}
    clean = []
    for i, row in enumerate(rows):
        account = row["account_id"]
        if account in seen:
            raise RowError(f"rows[{i}].account_id", f"{account!r} already posted in rows[{seen[account]}]")
        seen[account] = i
        missing = [f for f in models.features if f not in row]
        if missing:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise RowError(f"rows[{i}].{missing[0]}", f"missing model feature(s) {shown} (send null when unknown)")
        out = {key: row.get(key) for key in OPTIONAL}
        out["account_id"] = account
        out["as_of"] = out["as_of"] or today or datetime.now(UTC).date()
        for name in models.features:
            out[name] = checked_value(row[name], name in models.categorical, i, name)
        if not out.get("arr", math.nan) >= 0:  # NaN (null) fails the comparison too
            got = value_text(row.get("arr"))
            raise RowError(
                f"rows[{i}].arr", f"the value at stake and the tier need the ARR: expected a number >= 0, got {got}"
            )
        clean.append(out)
    return clean


def feature_columns(rows: list[dict], models: Models) -> dict[str, np.ndarray]:
    """The feature arrays `score_columns` takes, by column name, from rows `checked_rows` passed.

    Arrays, not a DataFrame: building a frame of ~100 columns costs more than scoring a row.
    """
    numeric = [f for f in models.features if f not in models.categorical]
    block = np.array([[row[name] for name in numeric] for row in rows], dtype=float).reshape(len(rows), len(numeric))
    columns = {key: np.array([row[key] for row in rows], dtype=object) for key in ("account_id", *models.categorical)}
    columns["as_of"] = np.array([row["as_of"] for row in rows], dtype="datetime64[s]")
    for key in INFO:
        if any(row[key] is not None for row in rows):
            columns[key] = np.array([row[key] for row in rows], dtype=object)
    return columns | {name: block[:, i] for i, name in enumerate(numeric)}


def checked_value(value, categorical: bool, row: int, name: str):
    """A posted feature value as the model reads it, or a RowError naming the field (`rows[row].name`)."""
    if not categorical and type(value) is float and math.isfinite(value):  # the common case, ~90 a row
        return value
    if value is None:
        return None if categorical else math.nan  # a float column either way, so no per-call type conversion
    if categorical:
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
        raise RowError(f"rows[{row}].{name}", f"expected text or null, got {value_text(value)}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value) if not isinstance(value, int) or abs(value) < 2**1023 else math.inf
        if not math.isfinite(number):  # 1e400 and Infinity parse as inf, NaN as nan: none is a value
            raise RowError(
                f"rows[{row}].{name}",
                f"expected a finite number or null, got {value_text(value)} (NaN, Infinity and numbers "
                "too large for a float are not values)",
            )
        return number
    raise RowError(f"rows[{row}].{name}", f"expected a number or null, got {value_text(value)}")


def value_text(value) -> str:
    """A posted value as an error message shows it: short, whatever its size (a 400-digit number)."""
    text = json.dumps(value, default=repr)  # as JSON writes it: null, true, "nan", NaN
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def score_requests(
    requests: list[list[dict]], models: Models, policy: TierPolicy, book: Book
) -> list[list[dict] | Exception]:
    """Each request's answers, scored together when possible; a request that fails fails alone.

    The batch is scored in one pass (`score_answers`); if that fails (two requests posting the
    same account, one request's rows that cannot be tiered), each request is scored on its own
    and a failing one gets its exception as its result, so one caller's rows never fail another's.
    """
    try:
        return score_answers(requests, models, policy, book)
    except Exception as exc:
        if len(requests) == 1:
            return [exc]
        return [score_requests([request], models, policy, book)[0] for request in requests]


def score_answers(requests: list[list[dict]], models: Models, policy: TierPolicy, book: Book) -> list[list[dict]]:
    """Scores with reasons and tier proposals for several requests' checked rows, in one pass.

    The rows of all requests are scored together (the adaptive batch: one frame, one model
    call, one answer build); each request's tiers are still proposed on their own.
    """
    rows = [row for request in requests for row in request]
    features = feature_columns(rows, models)
    stored = book_rows(book, features["account_id"])
    held = stored[stored >= 0]
    previous = None if book.stamp is None else {name: values[held] for name, values in book.previous.items()}
    scored = score_columns(features, models, previous)
    sizes = [len(request) for request in requests]
    answers = list(lookup_answers(with_proposals(scored, stored, sizes, policy, book)).values())
    bounds = np.cumsum([0, *sizes])
    return [answers[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def book_rows(book: Book, account_ids: np.ndarray) -> np.ndarray:
    """Each posted account's row in the book (-1 for an account the book does not hold)."""
    position = book.standing.position
    return np.fromiter((position.get(a, -1) for a in account_ids), dtype=np.int64, count=len(account_ids))


def with_proposals(
    scored: dict[str, np.ndarray], stored: np.ndarray, sizes: list[int], policy: TierPolicy, book: Book
) -> dict[str, np.ndarray]:
    """Scored rows (`OUTPUT` columns) with tier, previous tier, segment and escalation proposed in the current book.

    Each request's rows (`sizes`, in order) replace their accounts' stored rows (`stored`, from
    `book_rows`) and the whole book is ranked again, the stored tiers counting as previous
    ones (hysteresis); requests batched together do not compete with each other. Without a
    book (no score batch yet) a request's rows are tiered among themselves.
    """
    held, known = book.standing, stored >= 0
    previous = np.full(len(stored), None, dtype=object)
    previous[known] = held.tier[stored[known]]
    posted = Standing.of(scored, previous)
    tiers, start = [], 0
    for size in sizes:
        part = slice(start, start + size)
        start += size
        others = np.ones(len(held.ids), dtype=bool)
        others[stored[part][stored[part] >= 0]] = False
        pool = held.subset(others).joined(posted.subset(part))
        tiers.append(place(pool, policy)[int(others.sum()) :])
    proposed = {**scored, **labels(scored, np.concatenate(tiers), previous, policy)}
    return {name: proposed[name] for name in OUTPUT}
