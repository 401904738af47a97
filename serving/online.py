"""On-demand scoring of posted feature rows: validation, the one scoring path, tier proposals.

The service turns posted rows into the feature frame `serving.scoring.score_frame` takes (the
function the batch job uses, so a posted row scores exactly as the batch would score it), after
checking each row against the features the models in service were trained on, so a bad value
is answered 400 naming `rows[i].feature` rather than scored as missing.

A single posted row cannot be ranked by capacity on its own, so its tier is a proposal: the row
is put into the current book (the latest-scores store, replacing that account's stored row) and
the book is tiered again with the same policy, hysteresis against the stored tiers included.
The answer says which book (as-of date, size) the proposal was made against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pandas as pd

from features.tables import DataError
from serving.live import Book, lookup_answers
from serving.registry import Models
from serving.scoring import score_frame
from serving.tiers import REQUIRED as TIERING_COLUMNS
from serving.tiers import TierPolicy, assign_tiers

PROPOSED = ("tier", "previous_tier", "segment", "escalate")
OPTIONAL = ("as_of", "insufficient_history", "renewal_date")


class RowError(DataError):
    """A posted row the models cannot score; `field` names it (`rows[2].seats`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ModelInputs:
    """What a posted row must carry for the models in service: every feature, and which are categories."""

    features: tuple[str, ...]
    categorical: frozenset[str]

    @classmethod
    def of(cls, models: Models) -> ModelInputs:
        names = dict.fromkeys(models.churn.features + models.growth.features)
        return cls(tuple(names), frozenset(models.churn.categories) | frozenset(models.growth.categories))


def feature_frame(rows: list[dict], inputs: ModelInputs, today: date | None = None) -> pd.DataFrame:
    """The feature frame for posted rows, after checking every model feature is present and typed.

    Numbers may be null (a missing value, as in the batch features); categories are text or
    null, and unseen categories score as missing, as in the batch. `as_of` defaults to today.

    Raises:
        RowError: a feature is missing, a number is not a number, a category is not text, or an
            account appears twice; the message names `rows[i].field`.
    """
    seen: dict[str, int] = {}
    clean = []
    for i, row in enumerate(rows):
        account = row["account_id"]
        if account in seen:
            raise RowError(f"rows[{i}].account_id", f"{account!r} already posted in rows[{seen[account]}]")
        seen[account] = i
        missing = [f for f in inputs.features if f not in row]
        if missing:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise RowError(f"rows[{i}].{missing[0]}", f"missing model feature(s) {shown} (send null when unknown)")
        out = {"account_id": account, "as_of": row.get("as_of") or (today or datetime.now(UTC).date())}
        for key in ("insufficient_history", "renewal_date"):
            if row.get(key) is not None:
                out[key] = row[key]
        for name in inputs.features:
            out[name] = checked_value(row[name], name in inputs.categorical, f"rows[{i}].{name}")
        clean.append(out)
    frame = pd.DataFrame(clean)
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    return frame


def checked_value(value, categorical: bool, field: str):
    """A posted feature value as the model reads it, or a RowError naming the field."""
    if value is None:
        return None
    if categorical:
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
        raise RowError(field, f"expected text or null, got {value!r}")
    if isinstance(value, bool | int | float):
        if isinstance(value, float) and math.isinf(value):
            raise RowError(field, "expected a finite number")
        return float(value)
    raise RowError(field, f"expected a number or null, got {value!r}")


def score_answers(frames: list[pd.DataFrame], models: Models, policy: TierPolicy, book: Book) -> list[list[dict]]:
    """Scores with reasons and tier proposals for several requests' rows, with one model call when possible.

    The rows of all requests go through `score_frame` together (the adaptive batch); if that
    fails (two requests posting the same account), each request is scored on its own so one
    caller's rows never fail another's.
    """
    sizes = [len(f) for f in frames]
    combined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    try:
        scored = score_frame(combined, models, policy, previous=stored_rows(book, combined["account_id"]))
    except DataError:
        if len(frames) == 1:
            raise
        return [score_answers([f], models, policy, book)[0] for f in frames]
    out, start = [], 0
    for size in sizes:
        part = scored.iloc[start : start + size]
        start += size
        out.append(list(lookup_answers(with_proposals(part, policy, book)).values()))
    return out


def stored_rows(book: Book, account_ids: pd.Series) -> pd.DataFrame | None:
    """The book's stored rows of the posted accounts (their last tier, risk and reasons), or None."""
    if book.rows.empty:
        return None
    return book.rows[book.rows["account_id"].isin(account_ids)]


def with_proposals(scored: pd.DataFrame, policy: TierPolicy, book: Book) -> pd.DataFrame:
    """Scored rows with tier, previous tier, segment and escalation as if re-tiered within the current book.

    Without a book (no score batch yet) the rows keep the tiers `score_frame` gave them among themselves.
    """
    if book.rows.empty:
        return scored
    others = book.rows[~book.rows["account_id"].isin(scored["account_id"])]
    pool = pd.concat([others[list(TIERING_COLUMNS)], scored[list(TIERING_COLUMNS)]], ignore_index=True)
    previous = book.rows[["account_id", "tier"]] if "tier" in book.rows else None
    tiered = assign_tiers(pool, policy, previous).iloc[len(others) :]
    out = scored.copy()
    for col in PROPOSED:
        out[col] = tiered[col].to_numpy()
    return out
