"""Which account attributes may become features: declared, checked, and screened for today's state.

The accounts table is an export made today, so its columns hold today's values, not the values
at each past as-of date. A column such as `status`, `churned_at`, `cancel_reason` or a
`health_score` that the CRM updates when a customer leaves tells a model the outcome it is
meant to predict: it would look perfect in the backtest and be useless on the living book. So an
attribute becomes a feature only when

1. the metrics YAML does not exclude it (and names it, if it declares a `static` list);
2. it is neither date-like (dates are when something happened: often the outcome itself) nor
   id-like (a value per account, or a name ending in `_id`: nothing to generalise from);
3. it passes the leak screen: its values must not separate the accounts that have already
   churned (no subscription in force when the data ends) from those still in force. The
   separation is the ROC AUC of the column against that split, out of fold for categories so a
   column with many values cannot separate by memorising them. A genuinely static attribute
   (industry, region, size) predicts churn a little; today's CRM state predicts it almost
   perfectly. Declared-static columns are screened too: a declaration states an intention,
   while the screen checks the export, and a `plan` changed on downgrade is declared static
   as often as it is not.

The decision is made once, in training, and stored with the model (`Attributes.chosen`, inside
the metric set), so scoring reads exactly the columns the model was trained on.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.errors import DataError
from features.subscriptions import contract_state
from features.tables import Tables

NOT_ATTRIBUTES = ("account_id", "created_at")  # the contract's own columns
MAX_SEPARATION = 0.9  # AUC above which an attribute is taken for today's state of the account
MIN_GROUP = 10  # churned and in-force accounts each needed for the screen to say anything
FOLDS = 5  # out-of-fold encoding of categories
SMOOTHING = 10  # pseudo-accounts at the overall churn share added to each category's share
MAX_ID_SHARE = 0.5  # text with more distinct values than this share of accounts (and 50) is an id
DATE_SHARE = 0.9  # text whose values parse as dates this often is a date
ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key)$", re.IGNORECASE)


@dataclass(frozen=True)
class Attributes:
    """The `attributes:` declaration of a metrics YAML and, once a model is trained, the columns it uses.

    `static`: only these columns may become features (None: any column of the accounts table).
    `exclude`: these never do. `chosen`: the columns the trained model reads, in order; None
    until training decides them (then scoring uses exactly these, whatever today's table holds).
    """

    static: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    chosen: tuple[str, ...] | None = None

    @classmethod
    def from_yaml(cls, spec: dict | None) -> Attributes:
        """Read the `attributes:` section (`static: [...]`, `exclude: [...]`); a malformed one is named."""
        spec = spec or {}
        if not isinstance(spec, dict) or set(spec) - {"static", "exclude"}:
            raise DataError(f"metrics file: 'attributes' takes only 'static' and 'exclude' lists, got {spec!r}")
        lists = {}
        for key in ("static", "exclude"):
            value = spec.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise DataError(f"metrics file: attributes.{key} must be a list of column names, got {value!r}")
            lists[key] = None if value is None else tuple(value)
        return cls(static=lists["static"], exclude=lists["exclude"] or ())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Attributes:
        data = data or {}
        return cls(**{k: None if v is None else tuple(v) for k, v in data.items()})


@dataclass(frozen=True)
class AttributeScreen:
    """What the screen decided: the attribute features, and each refused column with the reason."""

    chosen: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)  # column -> why
    separation: dict[str, float] = field(default_factory=dict)  # column -> AUC, for the columns screened

    def warnings(self) -> list[str]:
        """One line per excluded column, for the training output."""
        return [f"accounts.{col} excluded: {why}" for col, why in self.excluded.items()]

    def to_dict(self) -> dict:
        return asdict(self)


def screen_attributes(tables: Tables, declared: Attributes) -> AttributeScreen:
    """Decide which columns of `tables.accounts` become features (see the module docstring for the rules)."""
    accounts = tables.accounts
    candidates = [c for c in accounts.columns if c not in NOT_ATTRIBUTES]
    excluded: dict[str, str] = {}
    static = None if declared.static is None else {c.lower() for c in declared.static}
    missing = sorted((static or set()) - {c.lower() for c in accounts.columns})
    if missing:
        raise DataError(f"metrics file: attributes.static names column(s) the accounts table lacks: {missing}")
    exclude = {c.lower() for c in declared.exclude}
    for col in candidates:
        if col.lower() in exclude:
            excluded[col] = "listed in attributes.exclude of the metrics file"
        elif static is not None and col.lower() not in static:
            excluded[col] = "not declared static in the metrics file"
        elif is_date_like(accounts[col]):
            excluded[col] = "date-like: a date says when something happened (often the outcome), not what an account is"
        elif ID_NAME.search(col) or is_id_like(accounts[col]):
            excluded[col] = "id-like (a value per account): nothing a model can learn from"
    left = [c for c in candidates if c not in excluded]
    churned = churned_by_data_end(tables)
    separation = {}
    if left and churned is not None:
        for col in left:
            separation[col] = separation_auc(accounts[col], churned)
            if separation[col] > MAX_SEPARATION:
                excluded[col] = (
                    f"its values separate churned from in-force accounts (AUC {separation[col]:.2f}); "
                    "today's CRM state leaks the outcome"
                )
    chosen = tuple(c for c in left if c not in excluded)
    return AttributeScreen(chosen=chosen, excluded=excluded, separation=separation)


def churned_by_data_end(tables: Tables) -> np.ndarray | None:
    """Per account (in table order): 1 when none of its subscriptions is in force when the data ends.

    None when either group has fewer than `MIN_GROUP` accounts: no screen can tell state from trait then.
    """
    in_force = contract_state(tables.subscriptions, pd.DatetimeIndex([tables.data_end]))["account_id"]
    churned = (~tables.accounts["account_id"].isin(set(in_force))).to_numpy(dtype=int)
    if min(churned.sum(), len(churned) - churned.sum()) < MIN_GROUP:
        return None
    return churned


def separation_auc(values: pd.Series, churned: np.ndarray) -> float:
    """How well a column's values tell churned from in-force accounts: ROC AUC, folded to 0.5..1.

    Numbers are ranked as they are (missing lowest, since a CRM often blanks a field on
    churn); text and flags by each category's churn share learned on the other folds.
    """
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        score = np.where(np.isnan(numbers), np.nanmin(numbers) - 1 if np.isfinite(numbers).any() else 0, numbers)
    else:
        score = out_of_fold_share(values, churned)
    auc = roc_auc_score(churned, score)
    return float(max(auc, 1 - auc))


def out_of_fold_share(values: pd.Series, churned: np.ndarray) -> np.ndarray:
    """Each account's category churn share, learned without its own fold (missing is a category too)."""
    codes, _ = pd.factorize(values.astype("string").fillna("<missing>"))
    fold = np.random.default_rng(0).permutation(len(codes)) % FOLDS
    prior = churned.mean()
    total_n = np.bincount(codes)
    total_churned = np.bincount(codes, weights=churned)
    out = np.empty(len(codes))
    for f in range(FOLDS):
        held = fold == f
        n = total_n - np.bincount(codes[held], minlength=len(total_n))
        pos = total_churned - np.bincount(codes[held], weights=churned[held], minlength=len(total_n))
        out[held] = ((pos + SMOOTHING * prior) / (n + SMOOTHING))[codes[held]]
    return out


def is_id_like(values: pd.Series) -> bool:
    """Text with nearly a distinct value per account: an identifier, not a trait."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    filled = values.dropna().astype(str)
    return filled.nunique() > max(50, MAX_ID_SHARE * len(values))


def is_date_like(values: pd.Series) -> bool:
    """A date column, or text whose values are nearly all dates (`2025-03-01`, `03/01/2025 10:00`)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    filled = values.dropna().astype(str).str.strip()
    filled = filled[filled != ""].head(1000)
    if filled.empty or pd.to_numeric(filled, errors="coerce").notna().all():
        return False
    parsed = pd.to_datetime(filled, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= DATE_SHARE)
